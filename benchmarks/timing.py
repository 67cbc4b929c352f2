"""How the benchmarks time a training step, the one rule both use (throughput.py, packing.py).

On a CPU each step is timed on its own and a block's step time is the **median** of its steps: this
VM stalls a step now and then by tens of milliseconds, which a mean would carry into every ratio. On a
GPU steps are asynchronous, so a block is timed between two synchronizations and each of its steps
counts as the block's mean.
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


def timed_steps(step: Callable[[], object], steps: int, device: torch.device) -> list[float]:
    """Seconds of each of ``steps`` calls of ``step``: its own time on a CPU; on a GPU the synchronized
    block's time ÷ ``steps``, once per step."""
    if device.type == "cuda":
        synchronize(device)
        started = time.perf_counter()
        for _ in range(steps):
            step()
        synchronize(device)
        return [(time.perf_counter() - started) / max(1, steps)] * steps
    times, last = [], time.perf_counter()
    for _ in range(steps):
        step()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times


def per_step(device: torch.device, step_times: list[float], block_seconds: float, steps: int) -> float:
    """Seconds per step of a block: on a CPU the median of the steps' own times; on a GPU (or without
    per-step times) ``block_seconds ÷ steps``."""
    if device.type == "cuda" or not step_times:
        return block_seconds / max(1, steps)
    return float(statistics.median(step_times))
