"""Runs per hour packed against unpacked: K runs of one configuration as one vmapped model (src/pack.py).

    make bench                       # or: python -m benchmarks.packing [--steps 300] [--reps 5] [--ks 1,2,4,8]

For each model, norm and batch it times a training step (forward, backward, SGD step on the stacked
parameters: what :class:`src.pack.PackedClassifier` runs) of K packed members against K = 1, with
random CIFAR-shaped data on the device. ``runs/hour ratio = K × t(1) / t(K)``. Every repetition times
blocks of K = 1 and of K steps back to back (``--pairs`` alternations, each block about
``--seconds / (2 × pairs)`` long, after one warmup of ``--warmup`` steps per cell), so a change of the
machine's speed hits both sides of a ratio alike; the ratio is the median over ``--reps`` repetitions,
and ``spread`` is (max − min) / median of the per-repetition ratios, printed beside it.
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

from benchmarks.timing import synchronize, timed_steps
from src.atomic import write_text_atomic
from src.pack import PackedNet
from src.provenance import git_commit

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

    def __init__(self, model: str, norm: str, batch: int, k: int, device: torch.device):
        self.net = PackedNet(build_nets(model, norm, k, device)).to(device).train()
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.images = torch.randn(k, batch, 3, 32, 32, device=device)
        self.labels = torch.randint(0, 10, (k, batch), device=device)
        self.k = k
        self.device = device

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
        per_step = (time.perf_counter() - started) / max(1, warmup)
        return max(2, math.ceil(seconds / per_step))

    def step_times(self, steps: int) -> list[float]:
        """Seconds of each of ``steps`` steps (:func:`benchmarks.timing.timed_steps`)."""
        return timed_steps(self.step, steps, self.device)


def packing_table(
    device: torch.device,
    models: list[str],
    norms: list[str],
    batches: list[int],
    ks: list[int],
    steps: int | None,
    warmup: int,
    reps: int,
    seconds: float = 1.0,
    pairs: int = 2,
) -> pd.DataFrame:
    """One row per (model, norm, batch, K): median step times and the runs-per-hour ratio with its spread.

    Each cell is warmed up once, then timed in blocks of ``steps`` steps (None: as many as take about
    ``seconds / (2 × pairs)``). A repetition times, for each K, ``pairs`` alternations of a K = 1 block
    and a K block back to back, so that the two sides of a ratio see the same machine state; the ratio
    of a repetition is K × t(1) / t(K), each t the median step over its blocks (a stalled step of this
    VM does not move it; on a GPU the blocks' mean); the row gives the median over repetitions and
    their spread."""
    rows = []
    block_seconds = seconds / (2 * pairs)
    for model in models:
        for norm in norms:
            for batch in batches:
                cells = {k: Cell(model, norm, batch, k, device) for k in sorted(set([1, *ks]))}
                counts = {k: steps or cell.calibrate(block_seconds, warmup) for k, cell in cells.items()}
                one: list[float] = []
                for k in ks:
                    ratios, packed = [], []
                    for _ in range(reps):
                        times_1: list[float] = []
                        times_k: list[float] = []
                        for _ in range(pairs):
                            times_1 += cells[1].step_times(counts[1])
                            times_k += cells[k].step_times(counts[k])
                        t1, tk = statistics.median(times_1), statistics.median(times_k)
                        one.append(t1)
                        packed.append(tk)
                        ratios.append(k * t1 / tk)
                    median = statistics.median(ratios)
                    rows.append(
                        {
                            "model": model,
                            "norm": norm,
                            "batch": batch,
                            "K": k,
                            "steps": counts[k],
                            "step_ms_packed": round(1e3 * statistics.median(packed), 3),
                            "step_ms_one": round(1e3 * statistics.median(one[-reps:]), 3),
                            "member_steps_per_s": round(k / statistics.median(packed), 1),
                            "runs_per_hour_ratio": round(median, 3),
                            "spread": round((max(ratios) - min(ratios)) / median, 3),
                        }
                    )
    return pd.DataFrame(rows)


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
    parser.add_argument(
        "--steps", type=int, default=None, help="timed steps per cell and repetition (default: --seconds' worth)"
    )
    parser.add_argument("--seconds", type=float, default=1.0, help="time per cell and repetition when --steps is unset")
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--reps", type=int, default=5, help="repetitions (the median is reported)")
    parser.add_argument("--pairs", type=int, default=2, help="alternations of K = 1 and K blocks per repetition")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (1: one run per core, as a sweep)")
    parser.add_argument("--out", default=str(ROOT / "results" / "bench"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    torch.set_num_threads(args.threads)
    steps = args.steps
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
        args.pairs,
    )
    name = machine(device)
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    table.insert(0, "machine", name)
    table["date"] = stamp
    table["commit"] = git_commit()
    table["command"] = "python -m benchmarks.packing " + " ".join(sys.argv[1:] if argv is None else argv)
    block = f"{steps} steps" if steps else f"about {args.seconds / (2 * args.pairs):g} s"
    print(
        f"packed runs per hour vs unpacked on {name}: K = 1 and K blocks of {block}, {args.pairs} alternations"
        f" × {args.reps} repetitions ({stamp})"
    )
    print(table.drop(columns=["machine", "date", "commit", "command"]).to_string(index=False))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / "packing.csv", table.to_csv(index=False))
    return table


if __name__ == "__main__":
    main()
