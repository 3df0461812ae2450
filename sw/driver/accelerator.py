# SPDX-License-Identifier: Apache-2.0
""":class:`Accelerator`: a compiled model resident on the device, one inference per call.

:meth:`Accelerator.load` checks the device's design id against the program's, then writes the
program's constant blocks (weights, quant words, LUTs, tables) and its instructions once;
:meth:`Accelerator.predict` writes only each sample's input, runs the program and reads the
logits back -- the same array as ``sw.ref.model_forward_int`` (and ``sw.isasim.simulate``).
A streamed program (``Program.mode``) keeps only its activation constants resident: per
inference, each layer's weight, quant and LUT blocks are written before that layer runs.
Programs come from ``sw.program.compile_program(artifact, params)`` or a file written by
``sw.program.save_program``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from hw import isa
from sw import isasim
from sw.driver.device import Device
from sw.driver.errors import AccelError

__all__ = ["Accelerator", "ProgramError"]


class ProgramError(AccelError):
    """The program stopped with an error code in the accelerator's STATUS register."""

    def __init__(self, url: str, code: int, pc: int):
        self.code = code
        self.pc = pc
        try:
            name = isa.ErrorCode(code).name
        except ValueError:
            name = f"error {code}"
        super().__init__(f"the program on {url} stopped with {name} at instruction {pc}; "
                         f"docs/isa.md lists the error codes")


def _merged_spans(accesses) -> list[tuple[str, int, int]]:
    """``(region, start, end)`` of every byte the accesses touch, overlapping or touching
    spans merged (an ATTN's Q, K and V column slices of one tensor are one read)."""
    spans: list[tuple[str, int, int]] = []
    for a in sorted(accesses, key=lambda a: (a.region, a.offset)):
        if spans and spans[-1][0] == a.region and a.offset <= spans[-1][2]:
            region, start, end = spans.pop()
            spans.append((region, start, max(end, a.offset + a.size)))
        else:
            spans.append((a.region, a.offset, a.offset + a.size))
    return spans


def _unwritten(image, word: int, pc: int, accesses):
    """Run ``word`` on ``image`` (its operand bytes in place) twice, the result bytes that no
    operand covers filled with 0x00 and then with 0xFF: the image of the first run when the
    instruction writes every such byte (both runs agree on them), else ``None``. The
    instruction reads none of those bytes, so the fill cannot change what it computes."""
    runs = []
    for fill in (0x00, 0xFF):
        trial = image.copy()
        masks = {}
        for a in accesses:
            mask = masks.setdefault(a.region, np.zeros(len(trial.regions[a.region]), bool))
            if a.write:
                mask[a.offset:a.offset + a.size] = True
        for a in accesses:
            if not a.write:
                masks[a.region][a.offset:a.offset + a.size] = False
        for region, mask in masks.items():
            np.frombuffer(trial.regions[region], np.uint8)[mask] = fill
        isasim.run_instruction(trial, word, pc)
        runs.append((trial, masks))
    (first, masks), (second, _) = runs
    for region, mask in masks.items():
        a = np.frombuffer(first.regions[region], np.uint8)[mask]
        b = np.frombuffer(second.regions[region], np.uint8)[mask]
        if not np.array_equal(a, b):
            return None
    return first


class Accelerator(Device):
    """A :class:`Device` with a program loaded (``docs/protocol.md``, ``docs/isa.md``).

    Attributes
    ----------
    program : sw.program.Program or None
        The resident program.
    run_cycles : list of int
        Device cycles of each inference of the last :meth:`predict` (PERF's run cycles; the
        sum over the layer runs of a streamed program).
    """

    program = None
    run_cycles: list[int] = []     # replaced (never mutated) by predict
    _last: dict[int, int] = {}     # replaced by load: cycles of the last run from each entry

    def load(self, program) -> None:
        """Make ``program`` (a ``sw.program.Program`` or a saved program's path) resident."""
        if isinstance(program, (str, os.PathLike)):
            from sw.program import load_program
            program = load_program(program)
        params = program.params
        self.check_design(params.design_id, params.name)
        mmap = isa.memory_map(params)
        for block in program.resident_blocks():
            self.write_bytes(mmap.region(block.region).base + block.offset, block.data)
        instr = mmap.region("instr").base + program.entry * isa.INSTR_BYTES
        self.write_bytes(instr, isa.to_bytes(program.words))
        self.program = program
        self._last = {}

    def predict(self, x_q: np.ndarray, *, timeout: float = 10.0,
                after_run: Callable[[int], None] | None = None) -> np.ndarray:
        """int32 logits of ``x_q`` (one sample or a batch, as ``sw.ref.model_forward_int``
        takes it); :class:`ProgramError` if the program fails.

        ``after_run(entry)`` is called after every device run that did not fail, before the
        next one starts, with the entry it started at (one per sample in resident mode, one
        per layer in streamed mode, and one more after each instruction the host runs on a
        design with ``host_units``): the moment to read the ``PERF_*`` counters, which the next
        run clears.

        On a design with ``host_units`` the device stops with ``UNIT_ABSENT`` at each
        instruction of a unit it does not have: the driver reads that instruction's operand
        bytes back, runs it with the ISA simulator (``sw.isasim.run_instruction``), writes its
        result bytes and starts the device again after it. ``run_cycles`` counts device
        cycles only.
        """
        program = self.program
        if program is None:
            raise AccelError("no program is loaded: call load(program) first")
        x = np.asarray(x_q)
        single = x.ndim == program.input_ndim
        out = []
        self.run_cycles = []
        mmap = isa.memory_map(program.params)
        csr = mmap.region("csr").base
        steps = program.steps()
        for sample in (x[None] if single else x):
            self.write_bytes(program.input.bus_address, program.pack_input(sample))
            cycles = 0
            for entry, blocks in steps:
                for block in blocks:
                    self.write_bytes(mmap.region(block.region).base + block.offset, block.data)
                cycles += self._run_to_halt(entry, csr, timeout, after_run)
            self.run_cycles.append(cycles)
            out.append(self._read_output(program))
        logits = np.stack(out)
        return logits[0] if single else logits

    def _run_to_halt(self, entry: int, csr: int, timeout: float,
                     after_run: Callable[[int], None] | None) -> int:
        """Run from ``entry`` to the program's HALT, the host running every instruction the
        device stops at with ``UNIT_ABSENT``; returns the device cycles."""
        cycles = 0
        while True:
            self.run(entry)
            # One WAIT, answered when the run ends: the same run takes the same cycles, so a
            # budget a little above the last one's covers it.
            last = self._last.get(entry)
            st = self.wait(timeout, **({} if last is None else {"budget": last + last // 4
                                                               + 1024}))
            if st.acc_status & isa.Status.ERROR:
                pc = self.read(csr + isa.Csr.PC, 1)[0]
                code = (st.acc_status >> isa.STATUS_CODE_SHIFT) & 0xFF
                if code != isa.ErrorCode.UNIT_ABSENT:
                    raise ProgramError(self.url, code, pc)
            self._last[entry] = st.run_cycles
            cycles += st.run_cycles
            if after_run is not None:
                after_run(entry)
            if not st.acc_status & isa.Status.ERROR:
                return cycles
            self._run_on_host(pc)
            entry = pc + 1

    def _run_on_host(self, pc: int) -> None:
        """Run instruction ``pc`` of the resident program on the host: its operand bytes read
        from the device, the ISA simulator, its result spans written back. A result span's
        bytes that the instruction leaves alone (a ragged block's padding rows) keep the
        device's values: where it does not write every byte no operand covers, those spans
        are read too (:func:`_unwritten`)."""
        program = self.program
        params = program.params
        index = pc - program.entry
        if not 0 <= index < len(program.words):
            raise ProgramError(self.url, int(isa.ErrorCode.UNIT_ABSENT), pc)
        word = program.words[index]
        base = {r.name: r.base for r in isa.memory_map(params).regions}
        try:
            accesses = isasim.instruction_accesses(word, params, pc)
            image = isasim.MemoryImage(params)
            reads = [a for a in accesses if not a.write]
            for region, start, end in _merged_spans(reads):
                image.write(region, start, self.read_bytes(base[region] + start, end - start))
            result = _unwritten(image, word, pc, accesses)
            if result is None:                   # spans it does not write: read them, again
                for region, start, end in _merged_spans(accesses):
                    image.write(region, start,
                                self.read_bytes(base[region] + start, end - start))
                isasim.run_instruction(image, word, pc)
                result = image
        except isa.IsaError as exc:          # what a device with the unit would report
            raise ProgramError(self.url, int(exc.code), pc) from None
        for a in accesses:
            if a.write:
                self.write_bytes(base[a.region] + a.offset, result.read(a.region, a.offset,
                                                                        a.size))

    def _read_output(self, program) -> np.ndarray:
        """The logits: a classifier's one row with one strided READ of its ``n_classes``
        words (``Program.output_read``), anything else as the whole padded block."""
        strided = program.output_read()
        if strided is not None:
            addr, n, stride = strided
            return program.output_from_words(self.read(addr, n, stride))
        return program.unpack_output(
            self.read_bytes(program.output.bus_address, program.output.size))
