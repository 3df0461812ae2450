# SPDX-License-Identifier: Apache-2.0
"""A virtual board in pure Python: the frame-engine model in front of the ISA simulator.

:func:`isa_board` gives a :class:`sw.driver.model.FrameEngineModel` whose memory is a
``sw.isasim.MemoryImage`` of ``params`` and whose RUN executes the program with
``sw.isasim.run`` -- the accelerator's behaviour at instruction level, without cycles. Serve it
with :class:`sw.driver.model.LinkServer` and the unchanged driver runs whole models against it.
"""

from __future__ import annotations

from collections.abc import Iterator, MutableMapping

from hw import isa
from hw.link import protocol as p
from hw.params import AccelParams
from sw import isasim
from sw.driver.model import FrameEngineModel

__all__ = ["ImageMemory", "isa_board"]


class ImageMemory(MutableMapping):
    """The words of a ``MemoryImage`` by word address (bus byte address // 4)."""

    def __init__(self, image: isasim.MemoryImage):
        self.image = image

    def __getitem__(self, word: int) -> int:
        try:
            return int.from_bytes(self.image.bus_read(4 * word, 4), "little")
        except ValueError:
            raise KeyError(word) from None

    def __setitem__(self, word: int, value: int) -> None:
        self.image.bus_write(4 * word, int(value).to_bytes(4, "little"))

    def __delitem__(self, word: int) -> None:
        self[word] = 0

    def __iter__(self) -> Iterator[int]:
        for r in self.image.map.regions:
            yield from range(r.base // 4, r.end // 4)

    def __len__(self) -> int:
        return sum(r.size // 4 for r in self.image.map.regions)


def isa_board(params: AccelParams) -> FrameEngineModel:
    """A frame-engine model serving an ISA-simulated accelerator built from ``params``."""
    image = isasim.MemoryImage(params)
    csr = image.map.region("csr").base

    def on_run(entry: int, memory: object) -> int:
        try:
            stats = isasim.run(image, entry=entry)
        except isa.IsaError:
            stats = None                            # STATUS holds the error code
        board.acc_status = image.read_csr(isa.Csr.STATUS)
        return stats.instructions if stats else 0

    board = FrameEngineModel(
        p.identify_payload(params.digest(), params.name), image.map.regions,
        run_csrs=(csr + isa.Csr.ENTRY, csr + isa.Csr.CONTROL, int(isa.Control.START)),
        on_run=on_run)
    board.memory = ImageMemory(image)              # (power_cycle() would drop it: unsupported)
    board.image = image
    return board
