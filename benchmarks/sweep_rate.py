"""Runs per hour of a small study swept sequentially and with ``hydra/launcher=parallel``.

Whole sweeps are the blocks: each parallel sweep is bracketed by two sequential ones
(:func:`benchmarks.ratios.bracketed_rounds`) over a fixed window, and the speedup is the mean bracketed ratio
with its 95 % interval (:class:`benchmarks.ratios.Estimate`).
"""

from __future__ import annotations

import functools
import math
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import psutil

from benchmarks.ratios import REFERENCE, Budget, Estimate, bracketed_log_ratios, bracketed_rounds

ROOT = Path(__file__).resolve().parents[1]

SWEEP_STUDY = ("norm=bn,gn", "batch=8,16", "dataset=digits", "epochs=8", "logger=none", "force=true")


SEQUENTIAL, PARALLEL = REFERENCE, 1  # the two launchers' arms in a bracketed sequence
# A fixed 15-minute window: on this VM the speedup itself moves with the machine's disturbed stretches
# (1.09 over 480 s in one run, 1.24 in the next), so it is averaged over as many of them as a window holds.
SWEEP_BUDGET = Budget(precision=0.02, min_rounds=3, min_seconds=900.0, max_seconds=900.0)


def children_cpu_seconds() -> float:
    """User + system CPU seconds of this process's finished (waited-for) children and theirs."""
    times = psutil.Process().cpu_times()
    return times.children_user + times.children_system


def sweep_throughput(
    jobs: int, runs_dir: Path, budget: Budget = SWEEP_BUDGET, study: tuple[str, ...] = SWEEP_STUDY
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs per hour of a small study (default: digits, 8 epochs, 4 runs), sequential vs
    ``hydra/launcher=parallel``: whole sweeps as blocks, sequential, parallel, sequential, parallel, ...,
    sequential, so each parallel sweep is bracketed by two sequential ones (:mod:`benchmarks.ratios`),
    until ``budget`` says done (by default a fixed window). Returns the table (one row per launcher; the
    parallel row's ``speedup`` is the mean bracketed ratio with its interval) and the blocks: every sweep
    in the order it ran, its launcher, wall seconds and CPU seconds (of its processes, all cores). The
    sweeps write their runs under ``runs_dir``/bench_<launcher> (forced: retrained each time)."""
    extra = {"sequential": [], "parallel": ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"]}
    runs = math.prod(len(value.split(",")) for value in study)  # the grid of the swept overrides
    cpu_seconds: list[float] = []

    def sweep(launcher: str) -> float:
        sweep_dir = runs_dir / f"bench_{launcher}"
        command = [sys.executable, "-m", "src.train", "-m", *study, f"hydra.sweep.dir={sweep_dir}", *extra[launcher]]
        cpu_before, started = children_cpu_seconds(), time.perf_counter()
        subprocess.run(command, cwd=ROOT, check=True, capture_output=True)
        took = time.perf_counter() - started
        cpu_seconds.append(children_cpu_seconds() - cpu_before)
        print(
            f"  {launcher:<10} {runs} runs in {took:6.1f} s = {runs * 3600 / took:7.0f} runs/hour"
            f" ({cpu_seconds[-1]:.1f} CPU s)",
            flush=True,
        )
        return took

    sequence, _, _ = bracketed_rounds(
        functools.partial(sweep, "sequential"), {PARALLEL: functools.partial(sweep, "parallel")}, budget
    )
    estimate = Estimate.of(bracketed_log_ratios(sequence)[PARALLEL])
    launchers = {SEQUENTIAL: "sequential", PARALLEL: "parallel"}
    blocks = pd.DataFrame(
        {
            "block": range(len(sequence)),
            "launcher": [launchers[arm] for arm, _ in sequence],
            "seconds": [seconds for _, seconds in sequence],
            "cpu_seconds": cpu_seconds,
        }
    )
    rows = []
    for arm, launcher in launchers.items():
        mine = blocks[blocks["launcher"] == launcher]
        median = mine["seconds"].median()
        speedup = estimate if arm == PARALLEL else Estimate(1.0, 1.0, 1.0, 0.0, 0)
        rows.append(
            {
                "launcher": launcher,
                "runs": runs,
                "sweeps": len(mine),
                "seconds": median,
                "seconds_min": mine["seconds"].min(),
                "seconds_max": mine["seconds"].max(),
                "runs_per_hour": runs * 3600 / median,
                "speedup": speedup.ratio,
                "ci95_low": speedup.low,
                "ci95_high": speedup.high,
                "rel_se": speedup.rel_se,
                "precision_met": speedup.rel_se <= budget.precision,
            }
        )
    return pd.DataFrame(rows), blocks
