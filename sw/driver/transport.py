# SPDX-License-Identifier: Apache-2.0
"""Bytes to and from the device over a pyserial URL.

``/dev/ttyUSB0`` (or ``COM3``) is a board's USB serial port, ``socket://127.0.0.1:PORT`` a
virtual board or :class:`sw.driver.model.LinkServer`, and ``loop://`` pyserial's loopback (what
is written is read back; useful only to see a driver time out). The same code serves all.
"""

from __future__ import annotations

import serial

from sw.driver.errors import LinkClosedError, LinkError

__all__ = ["Transport"]


class Transport:
    """A pyserial port with the driver's error handling.

    Parameters
    ----------
    url : str
        Anything ``serial.serial_for_url`` accepts.
    baud : int
        Baud rate of a real serial port (ignored by ``socket://`` and ``loop://``); must be the
        board preset's ``AccelParams.baud``.
    read_timeout : float
        Seconds one :meth:`read` waits at most.
    """

    def __init__(self, url: str, *, baud: int = 115200, read_timeout: float = 0.05):
        if not isinstance(url, str) or not url:
            raise TypeError(f"url must be a non-empty string, not {url!r}")
        self.url = url
        try:
            self._port = serial.serial_for_url(url, baudrate=baud, timeout=read_timeout,
                                               write_timeout=5.0)
        except (serial.SerialException, ValueError) as exc:
            raise LinkError(
                f"cannot open {url}: {exc}. Is the board plugged in (lightformer ports lists "
                f"serial ports) or the virtual board running (lightformer vboard)?") from None

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
            self._port.flush()
        except (serial.SerialException, OSError) as exc:
            raise LinkClosedError(f"writing to {self.url} failed: {exc}") from None

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes, fewer (or none) if the read timeout passes first."""
        try:
            return self._port.read(n)
        except (serial.SerialException, OSError) as exc:
            raise LinkClosedError(
                f"{self.url} closed the connection ({exc}); the device or virtual board "
                f"stopped") from None

    def discard_input(self) -> None:
        """Drop bytes already received (stale replies before a retry)."""
        try:
            self._port.reset_input_buffer()
        except (serial.SerialException, OSError) as exc:
            raise LinkClosedError(f"{self.url} closed the connection ({exc})") from None

    @property
    def read_timeout(self) -> float:
        return float(self._port.timeout)

    @read_timeout.setter
    def read_timeout(self, seconds: float) -> None:
        self._port.timeout = seconds

    def close(self) -> None:
        self._port.close()

    @property
    def is_open(self) -> bool:
        return bool(self._port.is_open)
