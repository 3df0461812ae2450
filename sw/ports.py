# SPDX-License-Identifier: Apache-2.0
"""``lightformer ports``: the serial ports a board could be on (``serial.tools.list_ports``).

Prints one line per port -- its device path (what ``--port`` takes), the USB vendor:product id
and the description the system gives -- or says that there are none and how to reach a board or
a virtual board instead.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "describe", "run"]


def describe(port) -> str:
    """One line for a ``serial.tools.list_ports`` entry: device, USB id, description."""
    usb = f"{port.vid:04x}:{port.pid:04x}" if port.vid is not None and port.pid is not None \
        else "-"
    description = port.description if port.description not in (None, "", "n/a") else "-"
    return f"{port.device:<20} {usb:<10} {description}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser                            # no options: the command only lists


def run(args: argparse.Namespace) -> int:
    from serial.tools import list_ports

    ports = sorted(list_ports.comports(), key=lambda p: p.device)
    if not ports:
        print("lightformer ports: no serial ports found. Plug the board's USB cable in (on "
              "Linux the port is /dev/ttyUSB* or /dev/ttyACM*; your user needs the dialout "
              "group), or run a virtual board: lightformer vboard")
        return 0
    print(f"{'PORT':<20} {'USB ID':<10} DESCRIPTION")
    for port in ports:
        print(describe(port))
    return 0
