# SPDX-License-Identifier: Apache-2.0
"""Host driver of the lightformer accelerator: one API for a board on ``/dev/ttyUSB0`` and a
virtual board on ``socket://127.0.0.1:PORT``.

* :mod:`.transport` -- bytes over a pyserial URL, with timeouts;
* :mod:`.framing` -- frames of :mod:`hw.link.protocol` (CRC, sequence numbers);
* :mod:`.device` -- :class:`Device`: identify, read, write, run, status, perf, with retries;
* :mod:`.accelerator` -- :class:`Accelerator`: load a compiled program, predict;
* :mod:`.errors` -- :class:`AccelError` and its subclasses;
* :mod:`.model` -- a byte-level model of the device's frame engine, served over TCP for tests;
* :mod:`.isaboard` -- that model in front of the ISA simulator: a virtual board in Python.

Nothing here imports torch or Amaranth.
"""

from sw.driver.accelerator import Accelerator, ProgramError
from sw.driver.device import Device, DeviceStatus, Perf, Waited
from sw.driver.errors import (
                              AccelError,
                              CrcError,
                              DesignMismatchError,
                              DeviceError,
    DeviceResetError,
                              LinkClosedError,
                              LinkError,
                              LinkTimeoutError,
                              ProtocolError,
)

__all__ = ["AccelError", "Accelerator", "CrcError", "DesignMismatchError", "Device", "DeviceError",
           "DeviceResetError", "DeviceStatus", "LinkClosedError", "LinkError",
           "LinkTimeoutError", "Perf", "ProgramError", "ProtocolError", "Waited"]
