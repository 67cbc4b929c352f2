"""Runs per hour packed against unpacked: K runs of one configuration as one vmapped model (src/sweep/pack/).

    make bench                       # or: python -m benchmarks.packing [--max-seconds 1200] [--tolerance 0.15]

For each model, norm and batch it times a training step (forward, backward, SGD step on the stacked
parameters: what :class:`src.sweep.pack.PackedClassifier` runs) of K packed members against a one-member
reference model, with random CIFAR-shaped data on the device. ``runs/hour ratio = K × t(1) / t(K)``.

The design, because this VM's speed drifts by ~10 % from one second to the next: after a warmup, rounds
of blocks (each about ``--block`` seconds of one model's steps and at least ``--min-block-steps``, 3: a
block's step is the median of its steps, so one slow step does not move it)
run as reference, K = 1, reference, K = 2, reference, K = 4, reference, K = 8, reference: every packed
block is **bracketed** by two reference blocks, and its ratio is taken against their geometric mean, so
the drift cancels to first order. Other tenants of the VM also put it into a disturbed state for seconds
to minutes at a time, and that changes the ratio itself (a one-member step suffers more than a packed
one: ResNet-8 + BN at batch 2, K = 8, 1.93 undisturbed, 2.3 disturbed), so a ratio timed in one stretch
of a few minutes follows that stretch's state (two consecutive runs: 2.28 vs 2.03). Hence the rounds
**interleave every model, norm and batch**: one round of each in turn, then the next, for a fixed window
of 20 minutes (``--min-seconds`` = ``--max-seconds`` = 1200), so every ratio averages the machine's
states over the same long window, and two windows in a row hold much the same mix. Each K's ratio is the
mean of its blocks' log ratios, printed with its 95 % interval and ``precision_met`` (relative standard
error at most ``--precision`` from at least ``--min-rounds`` blocks; before ``--min-seconds`` rounds stop
early only when every ratio met it). ``--tolerance`` counts only blocks within that fraction of their
model's fastest (:func:`benchmarks.ratios.undisturbed`: the least disturbed machine's ratio; ``kept``
counts them, ``ratio_all_blocks`` is the ratio over every block); at 0.15 it kept 4-17 blocks of 47-53
and two runs agreed less well than over every block (29 vs 31 of 32), so the default counts every
block. The K = 1 row is a second one-member model timed as the others are: the noise floor, 1 within
its interval.
On a CPU with one thread a step is timed by the process's CPU time (``--clock auto``,
:mod:`benchmarks.timing`), so time the machine gives to other work counts on neither side; the table
names its clock. ``python -m benchmarks.agreement first second`` prints how far two runs agree.
Writes ``results/bench/packing.csv`` naming the machine; :data:`src.sweep.launcher.DEFAULT_SIZES` is chosen
from it.
"""

from __future__ import annotations

import argparse
import functools
import math
import statistics
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from benchmarks.ratios import (
    REFERENCE,
    Budget,
    Estimate,
    Sequence,
    extend_round,
    pooled_log_ratios,
    undisturbed,
)
from benchmarks.timing import CLOCKS, Clock, per_step, step_clock, synchronize, timed_steps
from src.run.atomic import write_text_atomic
from src.run.provenance import git_commit, inside_project
from src.sweep.pack import PackedNet

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"


def build_nets(model: str, norm: str, k: int, device: torch.device) -> list[torch.nn.Module]:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", overrides=[f"model={model}", f"norm={norm}", "norm_groups=8"])
    nets = []
    for seed in range(k):
        torch.manual_seed(seed)
        factory = instantiate(cfg.norm)
        net = instantiate(cfg.model, input_shape=(3, 32, 32), num_classes=10, norm=factory)
        factory.apply_weight(net)
        nets.append(net.to(device))
    return nets


class Cell:
    """One packed model of K members, ready to step."""

    def __init__(
        self, model: str, norm: str, batch: int, k: int, device: torch.device, clock: Clock = time.perf_counter
    ):
        self.net = PackedNet(build_nets(model, norm, k, device)).to(device).train()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.images = torch.randn(k, batch, 3, 32, 32, device=device)
        self.labels = torch.randint(0, 10, (k, batch), device=device)
        self.k = k
        self.device = device
        self.clock = clock
        self.calibrate_seconds = 0.0

    def step(self) -> None:
        logits = self.net(self.images)
        loss = sum(F.cross_entropy(logits[i], self.labels[i]) for i in range(self.k))
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()

    def calibrate(self, seconds: float, warmup: float, min_steps: int = 1) -> int:
        """Steps in a block of about ``seconds`` (at least ``min_steps``), from the mean step of a warmup:
        one step, then steps until ``warmup`` seconds (and at least 2 steps) have passed."""
        self.step()
        synchronize(self.device)
        started, steps = time.perf_counter(), 0
        while steps < 2 or time.perf_counter() - started < warmup:
            self.step()
            steps += 1
            synchronize(self.device)
        self.calibrate_seconds = (time.perf_counter() - started) / steps
        return max(min_steps, math.ceil(seconds / self.calibrate_seconds))

    def block(self, steps: int) -> float:
        """Seconds per step of a block of ``steps`` steps (:func:`benchmarks.timing.per_step`: on a CPU the
        median of the steps' own times on the cell's clock)."""
        times = timed_steps(self.step, steps, self.device, self.clock)
        return per_step(self.device, times, sum(times), steps)


def cell_rows(
    rounds: list[Sequence], budget: Budget, tolerance: float = math.inf
) -> list[dict[str, float | int | bool]]:
    """One row per arm of one model, norm and batch, from its ``rounds`` (each a bracketed sequence): its
    median undisturbed step, the reference's, the ratio over the bracketed blocks undisturbed within
    ``tolerance`` (:func:`pooled_log_ratios`) with its interval and error, whether that met ``budget``,
    how many blocks counted, and the ratio over every block."""
    blocks = [block for sequence in rounds for block in sequence]
    counted = undisturbed(blocks, tolerance)

    def median_ms(which: int) -> float:
        kept = (s for (arm, s), ok in zip(blocks, counted, strict=True) if arm == which and ok)
        return round(1e3 * statistics.median(kept), 3)

    every = pooled_log_ratios(rounds)
    rows = []
    for k, logs in pooled_log_ratios(rounds, tolerance=tolerance).items():
        estimate = Estimate.of(logs)
        rows.append(
            {
                "K": k,
                "step_ms_packed": median_ms(k),
                "step_ms_one": median_ms(REFERENCE),
                "runs_per_hour_ratio": round(estimate.ratio, 3),
                "ci95_low": round(estimate.low, 3),
                "ci95_high": round(estimate.high, 3),
                "rel_se": round(estimate.rel_se, 4),
                "precision_met": budget.met(estimate),
                "kept": estimate.n,
                "ratio_all_blocks": round(Estimate.of(every[k]).ratio, 3),
            }
        )
    return rows


@dataclass
class Group:
    """One model, norm and batch: a one-member reference model, one packed model per K (K = 1 a second
    one-member model: the noise floor), each block's steps, and the rounds timed so far."""

    model: str
    norm: str
    batch: int
    reference: Cell
    arms: dict[int, Cell]
    steps: dict[int, int]
    rounds: list[Sequence] = field(default_factory=list)

    def run_round(self) -> None:
        """One round: reference, K1, reference, K2, ..., reference; each arm block bracketed by two reference
        blocks of the same round."""
        reference = functools.partial(self.reference.block, self.steps[REFERENCE])
        sequence = [(REFERENCE, reference())]
        extend_round(
            sequence, reference, {k: functools.partial(cell.block, self.steps[k]) for k, cell in self.arms.items()}
        )
        self.rounds.append(sequence)


def packing_table(
    device: torch.device,
    models: list[str],
    norms: list[str],
    batches: list[int],
    ks: list[int],
    steps: int | None,
    warmup: float,
    budget: Budget,
    block: float = 0.25,
    clock: str = "wall",
    tolerance: float = math.inf,
    min_steps: int = 3,
) -> pd.DataFrame:
    """One row per (model, norm, batch, K): median step times and the runs-per-hour ratio with its 95 %
    interval and relative standard error.

    Every model, norm and batch gets a :class:`Group` of models, built and warmed up before any timing;
    then rounds run **over all groups in turn** until ``budget`` is met for every ratio of every group (so
    each group's blocks spread over the whole table's time, not one stretch of it), each arm block of
    about ``block`` seconds and at least ``min_steps`` steps (or ``steps`` steps) between two reference
    blocks; each block's step is the median of its steps on ``clock`` (``cpu`` or ``wall``,
    :func:`benchmarks.timing.step_clock`) and each K's ratio the mean of the bracketed log ratios of its
    blocks undisturbed within ``tolerance``
    (:func:`pooled_log_ratios`)."""
    groups = []
    for model in models:
        for norm in norms:
            for batch in batches:
                reference = Cell(model, norm, batch, 1, device, CLOCKS[clock])
                arms = {k: Cell(model, norm, batch, k, device, CLOCKS[clock]) for k in ks}
                cells = {REFERENCE: reference, **arms}
                counts = {k: steps or cell.calibrate(block, warmup, min_steps) for k, cell in cells.items()}
                groups.append(Group(model, norm, batch, reference, arms, counts))
    started, rounds = time.perf_counter(), 0
    while True:
        for group in groups:
            group.run_round()
        rounds += 1
        seconds = time.perf_counter() - started
        estimates = {
            (id(group), k): Estimate.of(logs)
            for group in groups
            for k, logs in pooled_log_ratios(group.rounds, tolerance=tolerance).items()
        }
        if budget.done(rounds, seconds, estimates):
            break
    rows = []
    for group in groups:
        for row in cell_rows(group.rounds, budget, tolerance):
            k = int(row["K"])
            rows.append(
                {
                    "model": group.model,
                    "norm": group.norm,
                    "batch": group.batch,
                    **row,
                    "steps": group.steps[k],
                    "blocks": rounds,
                    "seconds": round(seconds, 1),
                    "member_steps_per_s": round(1e3 * k / row["step_ms_packed"], 1),
                    "clock": clock,
                }
            )
    columns = ["model", "norm", "batch", "K", "steps", "blocks", "seconds", "step_ms_packed", "step_ms_one"]
    estimate = ["runs_per_hour_ratio", "ci95_low", "ci95_high", "rel_se", "precision_met", "kept"]
    return pd.DataFrame(rows)[[*columns, "member_steps_per_s", *estimate, "ratio_all_blocks", "clock"]]


def machine(device: torch.device) -> str:
    import platform

    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} ({torch.get_num_threads()} thread(s))"


def main(argv: list[str] | None = None) -> pd.DataFrame:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--models", default="resnet8,resnet20")
    parser.add_argument("--norms", default="bn,gn")
    parser.add_argument("--batches", default="2,32")
    parser.add_argument("--ks", default="1,2,4,8")
    parser.add_argument("--steps", type=int, default=None, help="steps per block (default: --block's worth)")
    parser.add_argument("--block", type=float, default=0.25, help="seconds per block when --steps is unset")
    parser.add_argument(
        "--min-block-steps",
        type=int,
        default=3,
        help="steps per block, at least (its step is their median: one slow step does not move it)",
    )
    parser.add_argument("--warmup", type=float, default=1.0, help="seconds of warmup steps per model (at least 2)")
    parser.add_argument("--precision", type=float, default=0.01, help="relative standard error to reach per ratio")
    parser.add_argument("--min-rounds", type=int, default=8, help="and counted blocks per K")
    parser.add_argument("--min-seconds", type=float, default=1200.0, help="of rounds, for the whole table")
    parser.add_argument("--max-seconds", type=float, default=1200.0, help="of rounds, for the whole table")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=math.inf,
        help="count only blocks within this fraction of their model's fastest (least disturbed); default inf: all",
    )
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: one run per core, as a sweep)")
    parser.add_argument(
        "--clock",
        default="auto",
        choices=["auto", *CLOCKS],
        help="auto: the process's CPU time for a one-thread CPU step, else wall time",
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args(argv)
    if not args.tolerance >= 0:
        parser.error(f"--tolerance={args.tolerance}: allowed are numbers >= 0 (inf counts every block)")
    if args.min_block_steps < 1:
        parser.error(f"--min-block-steps={args.min_block_steps}: allowed are integers >= 1")
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    steps = args.steps
    clock = step_clock(device, args.threads, args.clock)
    table = packing_table(
        device,
        args.models.split(","),
        args.norms.split(","),
        [int(b) for b in args.batches.split(",")],
        [int(k) for k in args.ks.split(",")],
        steps,
        args.warmup,
        Budget(args.precision, args.min_rounds, args.min_seconds, args.max_seconds),
        args.block,
        clock,
        args.tolerance,
        args.min_block_steps,
    )
    name = machine(device)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    table.insert(0, "machine", name)
    table["date"] = stamp
    table["commit"] = git_commit(ignore=inside_project(Path(args.out)))  # its own table leaves it clean
    table["command"] = "python -m benchmarks.packing " + " ".join(sys.argv[1:] if argv is None else argv)
    block = f"{steps} steps" if steps else f"about {args.block:g} s (at least {args.min_block_steps} steps)"
    counted = (
        "every block" if math.isinf(args.tolerance) else f"blocks within {args.tolerance:.0%} of their model's fastest"
    )
    print(
        f"packed runs per hour vs unpacked on {name}: blocks of {block}, each K's bracketed by blocks of a"
        f" one-member reference, counting {counted}, until"
        f" each ratio's relative standard error is at most {args.precision:g}"
        f" ({args.min_seconds:g}-{args.max_seconds:g} s of rounds over every model, norm and batch in turn); 95 %"
        f" intervals; steps"
        f" timed by {'the process CPU time' if clock == 'cpu' else 'wall time'} ({stamp})"
    )
    print(table.drop(columns=["machine", "date", "commit", "command"]).to_string(index=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "packing.csv", table.to_csv(index=False))
    return table


if __name__ == "__main__":
    main()
