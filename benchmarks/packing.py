"""Runs per hour packed against unpacked: K runs of one configuration as one vmapped model (src/pack.py).

    make bench                       # or: python -m benchmarks.packing [--seconds 40] [--block 0.25] [--ks 1,2,4,8]

For each model, norm and batch it times a training step (forward, backward, SGD step on the stacked
parameters: what :class:`src.pack.PackedClassifier` runs) of K packed members against K = 1, with
random CIFAR-shaped data on the device. ``runs/hour ratio = K × t(1) / t(K)``. After a warmup of
``--warmup`` steps per K, about ``--seconds`` go to rounds: each round a block of every K in turn (K = 1,
2, 4, 8), each block about ``--block`` seconds, so every K's steps and the K = 1 steps they are compared
with are taken in the same second of the machine's life; t is the median step over all rounds, and
``spread`` is (max − min) / ratio over ``--reps`` consecutive groups of rounds. The K = 1 row times K = 1's
odd blocks against its even ones: the machine's noise floor. On a CPU with one thread a step is timed by
the process's CPU time (``--clock auto``, :mod:`benchmarks.timing`), so time the machine gives to other
work (the hypervisor, other processes) counts on neither side; the table names its clock.
``python -m benchmarks.agreement first.csv second.csv`` prints how far two runs' ratios agree.
Writes ``results/bench/packing.csv`` naming the machine; :data:`src.launcher.DEFAULT_SIZES` is chosen
from it.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from benchmarks.timing import CLOCKS, Clock, step_clock, synchronize, timed_steps
from src.atomic import write_text_atomic
from src.pack import PackedNet
from src.provenance import git_commit, inside_project

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

    def calibrate(self, seconds: float, warmup: int) -> int:
        """Steps that take about ``seconds`` (at least 2), from the time of ``warmup`` steps after one."""
        self.step()
        synchronize(self.device)
        started = time.perf_counter()
        for _ in range(max(1, warmup)):
            self.step()
        synchronize(self.device)
        self.calibrate_seconds = (time.perf_counter() - started) / max(1, warmup)
        return max(2, math.ceil(seconds / self.calibrate_seconds))

    def step_times(self, steps: int) -> list[float]:
        """Seconds of each of ``steps`` steps (:func:`benchmarks.timing.timed_steps`)."""
        return timed_steps(self.step, steps, self.device, self.clock)


def round_robin(cells: dict[int, Cell], counts: dict[int, int], rounds: int) -> dict[int, list[list[float]]]:
    """``rounds`` passes over every K, a block of ``counts[K]`` steps each, back to back: each K's block
    step times per round. A pass takes about a second, so every K sees the machine as it is that second."""
    times: dict[int, list[list[float]]] = {k: [] for k in cells}
    for _ in range(rounds):
        for k, cell in cells.items():
            times[k].append(cell.step_times(counts[k]))
    return times


def ratio(k: int, one: list[float], packed: list[float]) -> float:
    """Runs per hour packed / unpacked from step times: K × t(1) / t(K), each t a median step."""
    return k * statistics.median(one) / statistics.median(packed)


def cell_rows(times: dict[int, list[list[float]]], reps: int) -> list[dict[str, float | int]]:
    """Each K's ratio over all its blocks, and its spread over ``reps`` consecutive groups of rounds.

    K = 1 is timed against itself, its odd blocks against its even ones: the machine's noise floor."""
    rounds = len(times[1])
    groups = [range(g * rounds // reps, (g + 1) * rounds // reps) for g in range(reps)]

    def steps(k: int, rows: range | list[int]) -> list[float]:
        return [t for r in rows for t in times[k][r]]

    odd, even = list(range(1, rounds, 2)), list(range(0, rounds, 2))
    rows = []
    for k in times:
        if k == 1:
            whole = ratio(1, steps(1, odd), steps(1, even))
            parts = [ratio(1, steps(1, [r for r in g if r % 2]), steps(1, [r for r in g if not r % 2])) for g in groups]
        else:
            whole = ratio(k, steps(1, range(rounds)), steps(k, range(rounds)))
            parts = [ratio(k, steps(1, g), steps(k, g)) for g in groups]
        rows.append(
            {
                "K": k,
                "step_ms_packed": round(1e3 * statistics.median(steps(k, range(rounds))), 3),
                "step_ms_one": round(1e3 * statistics.median(steps(1, range(rounds))), 3),
                "runs_per_hour_ratio": round(whole, 3),
                "spread": round((max(parts) - min(parts)) / whole, 3),
            }
        )
    return rows


def packing_table(
    device: torch.device,
    models: list[str],
    norms: list[str],
    batches: list[int],
    ks: list[int],
    steps: int | None,
    warmup: int,
    reps: int,
    seconds: float = 40.0,
    block: float = 0.25,
    clock: str = "wall",
) -> pd.DataFrame:
    """One row per (model, norm, batch, K): median step times and the runs-per-hour ratio with its spread.

    For each model, norm and batch, one model per K is built and warmed up; then about ``seconds`` are
    spent in rounds, each a block of every K in turn, back to back (:func:`round_robin`), every block about
    ``block`` seconds (or ``steps`` steps), so each K's steps and the K = 1 steps they are compared with are
    taken in the same seconds. The ratio is K × t(1) / t(K) over all rounds (each t the median step,
    :mod:`benchmarks.timing`), and its spread is (max − min) / ratio over ``reps`` consecutive groups of
    rounds. ``clock`` (``cpu`` or ``wall``, :func:`benchmarks.timing.step_clock`) times a CPU step."""
    rows = []
    all_ks = sorted({1, *ks})
    for model in models:
        for norm in norms:
            for batch in batches:
                cells = {k: Cell(model, norm, batch, k, device, CLOCKS[clock]) for k in all_ks}
                counts = {k: steps or cell.calibrate(block, warmup) for k, cell in cells.items()}
                rounds = 2 * reps  # with fixed steps (a test, a quick look): two rounds a group
                if not steps:
                    per_round = sum(counts[k] * cells[k].calibrate_seconds for k in all_ks)
                    rounds = max(rounds, math.ceil(seconds / per_round))
                times = round_robin(cells, counts, rounds)
                for row in cell_rows(times, reps):
                    if row["K"] not in ks:
                        continue
                    k = int(row["K"])
                    rows.append(
                        {
                            "model": model,
                            "norm": norm,
                            "batch": batch,
                            **row,
                            "steps": counts[k],
                            "blocks": rounds,
                            "member_steps_per_s": round(1e3 * k / row["step_ms_packed"], 1),
                            "clock": clock,
                        }
                    )
    columns = ["model", "norm", "batch", "K", "steps", "blocks", "step_ms_packed", "step_ms_one"]
    return pd.DataFrame(rows)[[*columns, "member_steps_per_s", "runs_per_hour_ratio", "spread", "clock"]]


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
    parser.add_argument("--seconds", type=float, default=40.0, help="time per model, norm and batch (all K)")
    parser.add_argument("--block", type=float, default=0.25, help="seconds per block of one K when --steps is unset")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--reps", type=int, default=5, help="groups of rounds the spread is taken over")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: one run per core, as a sweep)")
    parser.add_argument(
        "--clock",
        default="auto",
        choices=["auto", *CLOCKS],
        help="auto: the process's CPU time for a one-thread CPU step, else wall time",
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args(argv)
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
        args.reps,
        args.seconds,
        args.block,
        clock,
    )
    name = machine(device)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    table.insert(0, "machine", name)
    table["date"] = stamp
    table["commit"] = git_commit(ignore=inside_project(Path(args.out)))  # its own table leaves it clean
    table["command"] = "python -m benchmarks.packing " + " ".join(sys.argv[1:] if argv is None else argv)
    block = f"{steps} steps" if steps else f"about {args.block:g} s"
    print(
        f"packed runs per hour vs unpacked on {name}: rounds of one block ({block}) of every K in turn for"
        f" about {args.seconds:g} s per model, norm and batch; ratio over all rounds, spread over {args.reps}"
        f" groups of them; steps timed by {'the process CPU time' if clock == 'cpu' else 'wall time'} ({stamp})"
    )
    print(table.drop(columns=["machine", "date", "commit", "command"]).to_string(index=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "packing.csv", table.to_csv(index=False))
    return table


if __name__ == "__main__":
    main()
