"""Step time of normlab's training loop against a minimal hand-written PyTorch loop, and sweep throughput.

    make bench                       # or: python -m benchmarks.throughput [--steps 30] [--compile] [--no-sweep]
    python -m benchmarks.throughput --no-embedded --no-resnet       # the sweep bench alone

First, the issue's CPU target: the default run (small CNN, bn, the default embedded dataset), where the
hand loop trains the same model on the same images (normalized once, held in memory, drawn in a
random order) and normlab's step is the full ``src.training.single.train`` path (composed config, callbacks,
checkpointing); both as the median step time, repeated ``--reps`` times interleaved.

Then, for ResNet-20 on CIFAR-10-shaped data (3×32×32, 10 classes, random pixels) at batch 2, 32 and 128 it
times, in the same process and on the same device: a hand loop (data already on the device, forward,
backward, SGD step) and normlab's loop (Lightning ``fit`` with normlab's LightningModule and
datamodule), eager and, with ``--compile`` (default on a GPU), through ``torch.compile``. With
``--sweep`` it also times a small study run sequentially and with ``hydra/launcher=parallel``: whole
sweeps as blocks, each parallel one bracketed by two sequential ones (:mod:`benchmarks.ratios`), over a
fixed window of ``--sweep-min-seconds`` (default 900 s; it stops early only past that and once the
speedup's relative standard error is at most ``--sweep-precision``, and at ``--sweep-max-seconds``);
the speedup printed with its 95 % interval (the three tables' modules: :mod:`benchmarks.embedded`,
:mod:`benchmarks.step_loops`, :mod:`benchmarks.sweep_rate`). It prints a table with ratios and writes
``results/bench/throughput.csv`` (and ``sweep.csv``, with every sweep's wall and CPU seconds in
``sweep_blocks.csv``) naming the machine and date.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch

from benchmarks.embedded import embedded_table
from benchmarks.ratios import Budget
from benchmarks.step_loops import hand_loop, normlab_loop, ratio_and_spread, resnet_pair
from benchmarks.sweep_rate import SWEEP_BUDGET, sweep_throughput
from src.run.atomic import write_text_atomic
from src.run.provenance import git_commit, inside_project

ROOT = Path(__file__).resolve().parents[1]


def step_table(device: torch.device, batches: list[int], steps: int, compiled: bool, reps: int = 3) -> pd.DataFrame:
    """Per batch and mode: median step times of the hand loop and normlab's over ``reps`` repetitions (on a
    CPU, eager: interleaved blocks inside one fit; else hand, then normlab) and :func:`ratio_and_spread`."""
    rows = []
    modes = [("eager", None)] + (
        [("compiled", "reduce-overhead" if device.type == "cuda" else "default")] if compiled else []
    )
    for batch in batches:
        for label, mode in modes:
            warmup = 10 if mode else 3
            hands, ours = [], []
            for _ in range(reps):
                if device.type == "cpu" and mode is None:  # paired blocks inside one fit
                    our, theirs = resnet_pair(batch, steps, warmup)
                else:  # a GPU's asynchronous steps: each loop timed as one synchronized block
                    theirs = hand_loop(device, batch, steps, warmup, mode)
                    our = normlab_loop(device, batch, steps, warmup, mode)
                hands.append(theirs)
                ours.append(our)
            ratio, spread = ratio_and_spread(ours, hands)
            hand, our = statistics.median(hands), statistics.median(ours)
            rows.append(
                {
                    "batch": batch,
                    "mode": label,
                    "hand_ms": 1e3 * hand,
                    "normlab_ms": 1e3 * our,
                    "normlab_over_hand": ratio,
                    "spread": spread,
                    "reps": reps,
                }
            )
            print(
                f"  batch {batch:>3} {label:<8} hand {1e3 * hand:8.2f} ms  normlab {1e3 * our:8.2f} ms"
                f"  ratio {ratio:5.2f} (spread {spread:.2f}, {reps} reps)",
                flush=True,
            )
    table = pd.DataFrame(rows)
    if compiled:
        eager = table[table["mode"] == "eager"].set_index("batch")["normlab_ms"]
        table["speedup_vs_eager"] = table["batch"].map(eager) / table["normlab_ms"]
    return table


def machine(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"{platform.processor() or platform.machine()} CPU, {os.cpu_count()} cores, {torch.get_num_threads()} threads"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=None, help="timed steps per cell (default 200 GPU, 40 CPU)")
    parser.add_argument("--batches", default="2,32,128")
    parser.add_argument(
        "--compile",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time torch.compile (default: on a GPU only)",
    )
    parser.add_argument(
        "--resnet", action=argparse.BooleanOptionalAction, default=True, help="the ResNet-20 step-time table"
    )
    parser.add_argument("--sweep", action=argparse.BooleanOptionalAction, default=True)
    parser.add_argument(
        "--embedded",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time the default small CNN run against a hand loop (default: on a CPU only; the target is a CPU one)",
    )
    parser.add_argument(
        "--embedded-steps",
        type=int,
        default=600,
        help="steps per embedded cell at batch 2 (one epoch); larger batches see as many images (>= 120 steps)",
    )
    parser.add_argument("--reps", type=int, default=5, help="interleaved repetitions per cell (embedded and ResNet-20)")
    parser.add_argument("--threads", default=None, help="CPU threads for the embedded table (default: 1 and all)")
    parser.add_argument("--loops", default="auto,off", help="fused_step values of the embedded table")
    parser.add_argument(
        "--sweep-precision",
        type=float,
        default=SWEEP_BUDGET.precision,
        help="relative standard error to reach for the parallel sweep's speedup",
    )
    parser.add_argument(
        "--sweep-min-rounds", type=int, default=SWEEP_BUDGET.min_rounds, help="parallel sweeps, at least"
    )
    parser.add_argument(
        "--sweep-min-seconds",
        type=float,
        default=SWEEP_BUDGET.min_seconds,
        help="the sweep bench's window: sweeps go on at least this long (capped by --sweep-max-seconds)",
    )
    parser.add_argument(
        "--sweep-max-seconds", type=float, default=SWEEP_BUDGET.max_seconds, help="the sweep bench's time budget"
    )
    parser.add_argument("--jobs", type=int, default=max(2, (os.cpu_count() or 2)))
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    parser.add_argument(
        "--runs", default=str(ROOT / "multirun"), help="where the embedded and sweep benches write their runs"
    )
    args = parser.parse_args(argv)
    logging.getLogger("pytorch_lightning").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    steps = args.steps or (200 if device.type == "cuda" else 40)
    compiled = device.type == "cuda" if args.compile is None else args.compile
    stamp = {
        "machine": machine(device),
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "commit": git_commit(ignore=inside_project(Path(args.out))),  # its own tables leave it clean
        "torch": torch.__version__,
        "command": "python -m benchmarks.throughput " + " ".join(sys.argv[1:] if argv is None else argv),
    }
    out = Path(args.out)
    if device.type == "cpu" if args.embedded is None else args.embedded:
        default_threads = sorted({1, torch.get_num_threads()})
        threads = [int(t) for t in args.threads.split(",")] if args.threads else default_threads
        print(f"Default run (small CNN, bn, the default embedded dataset): median step, {args.reps} reps")
        embedded = embedded_table(
            [2, 32], args.embedded_steps, args.reps, threads, Path(args.runs), args.loops.split(",")
        )
        print(embedded.round(3).to_string(index=False))
        write_text_atomic(out / "embedded.csv", embedded.assign(**stamp).round(4).to_csv(index=False))
        torch.set_num_threads(max(threads))
    if args.resnet:
        print(
            f"ResNet-20 training step on {stamp['machine']}"
            f" ({steps} timed steps per cell, {args.reps} interleaved reps)"
        )
        table = step_table(device, [int(b) for b in args.batches.split(",")], steps, compiled, args.reps)
        print(table.round(3).to_string(index=False))
        write_text_atomic(out / "throughput.csv", table.assign(**stamp).round(4).to_csv(index=False))
    if args.sweep:
        minimum = min(args.sweep_min_seconds, args.sweep_max_seconds)
        budget = Budget(args.sweep_precision, args.sweep_min_rounds, minimum, args.sweep_max_seconds)
        print(
            f"Sweep throughput ({args.jobs} parallel jobs): each parallel sweep between two sequential ones, for"
            f" {budget.min_seconds:g} s (then until the speedup's relative standard error is at most"
            f" {budget.precision:g}, at most {budget.max_seconds:g} s; at least {budget.min_rounds} parallel"
            " sweeps); 95 % interval"
        )
        sweep, blocks = sweep_throughput(args.jobs, Path(args.runs), budget)
        print(sweep.round(2).to_string(index=False))
        write_text_atomic(out / "sweep.csv", sweep.assign(**stamp).round(3).to_csv(index=False))
        write_text_atomic(out / "sweep_blocks.csv", blocks.assign(**stamp).round(3).to_csv(index=False))
    print(f"wrote {out}/")


if __name__ == "__main__":
    main()
