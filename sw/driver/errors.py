# SPDX-License-Identifier: Apache-2.0
"""The driver's errors: every failure of the link or the device is an :class:`AccelError`."""

from __future__ import annotations

from hw.link.protocol import ERROR_TEXT, Status

__all__ = ["AccelError", "CrcError", "DesignMismatchError", "DeviceError", "DeviceResetError",
           "LinkClosedError", "LinkError", "LinkTimeoutError", "ProtocolError"]


class AccelError(Exception):
    """Base class of every error the driver raises."""


class LinkError(AccelError):
    """The port could not be opened or used."""


class LinkClosedError(LinkError):
    """The other end closed the connection (virtual board stopped, cable unplugged)."""


class LinkTimeoutError(AccelError):
    """No (complete) reply arrived in time, after every retry."""


class CrcError(AccelError):
    """A reply's CRC did not match, after every retry."""


class ProtocolError(AccelError):
    """A reply was well formed but does not answer the request (wrong opcode or length)."""


class DeviceError(AccelError):
    """The device refused a request with a :class:`hw.link.protocol.Status` code."""

    def __init__(self, code: int, request: str):
        self.code = code
        try:
            text = ERROR_TEXT[Status(code)]
            name = Status(code).name
        except ValueError:
            text, name = "unknown status code", f"0x{code:02x}"
        super().__init__(f"{request}: the device answered {name} ({text})")


class DeviceResetError(AccelError):
    """The device lost a run: it is idle but reports no finished run (reset or power cycle)."""


class DesignMismatchError(AccelError):
    """The device runs another design than the one the program was compiled for."""

    def __init__(self, url: str, device_id: int, device_preset: str, program_id: int,
                 program_preset: str | None):
        self.device_id = device_id
        self.program_id = program_id
        want = f"0x{program_id:08x}" + (f" (preset {program_preset})" if program_preset else "")
        super().__init__(
            f"the device at {url} runs design 0x{device_id:08x} (preset {device_preset}), the "
            f"program was compiled for {want}; rebuild the program for the device "
            f"(lightformer compile --preset {device_preset}) or build and flash/start a board "
            f"for the program's preset")
