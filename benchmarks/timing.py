"""How the benchmarks time a training step, the one rule both use (throughput.py, packing.py).

On a CPU each step is timed on its own and a block's step time is the **median** of its steps: this
VM stalls a step now and then by tens of milliseconds, which a mean would carry into every ratio. On a
GPU steps are asynchronous, so a block is timed between two synchronizations and each of its steps
counts as the block's mean.

The packing bench times a CPU step by the **process's CPU time** (:func:`time.process_time`) where the step runs on
one thread (:func:`step_clock`): this 2-core VM loses whole stretches of wall time to the hypervisor and
to other processes, and such a loss does not hit a K = 1 step and a packed one alike (under three
processes on two cores the wall-clock K = 8 ratio of ResNet-20 + GN at batch 2 read 1.19-2.41 over six
repetitions, its CPU-time ratio 1.43-1.90, against 1.70 on the idle machine). With several threads the
CPU time of a step is the sum over its threads, not its duration, so the clock is the wall clock. The
throughput bench keeps the wall clock: its two sides alternate every few steps in one process, so a
slow stretch hits both alike (its ratios agree within ±5 % run to run, results/bench/agreement.txt).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import torch


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (a no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


Clock = Callable[[], float]
CLOCKS: dict[str, Clock] = {"cpu": time.process_time, "wall": time.perf_counter}


def step_clock(device: torch.device, threads: int, choice: str = "auto") -> str:
    """Which clock times a step: ``cpu`` (the process's CPU time) for a one-thread CPU step, else
    ``wall``; ``choice`` other than ``auto`` forces one (``cpu`` on a GPU is refused: its steps are
    asynchronous, their time is the device's)."""
    if choice not in ("auto", *CLOCKS):
        raise ValueError(f"clock={choice!r}: allowed are auto, {', '.join(CLOCKS)}")
    if choice == "cpu" and device.type == "cuda":
        raise ValueError("clock='cpu' times host CPU time, not a GPU step: use auto or wall on a GPU")
    if choice != "auto":
        return choice
    return "cpu" if device.type == "cpu" and threads == 1 else "wall"


def timed_steps(
    step: Callable[[], object], steps: int, device: torch.device, clock: Clock = time.perf_counter
) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step``: its own time on ``clock`` on a CPU; on a GPU the
    synchronized block's wall time ÷ ``steps``, once per step."""
    if device.type == "cuda":
        synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        return [(time.perf_counter() - started) / max(1, steps)] * steps
    times, last = [], clock()
    for _ in range(steps):
        step()
        now = clock()
        times.append(now - last)
        last = now
    return times


def per_step(device: torch.device, step_times: list[float], block_seconds: float, steps: int) -> float:
    """Seconds per step of a block: on a CPU the median of the steps' own times; on a GPU (or without
    per-step times) ``block_seconds ÷ steps``."""
    if device.type == "cuda" or not step_times:
        return block_seconds / max(1, steps)
    return float(statistics.median(step_times))
