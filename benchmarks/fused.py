"""normlab's fused packed step against a plain packed loop of the same cell, in one process (issue 31).

    python -m benchmarks.fused                        # CPU: resnet8 + gn, K = 8, batch 2 and 32
    python -m benchmarks.fused --device cuda --ks 8,64 --batches 2,32    # in make gpu-check

Both arms train K stacked members of one cell (model, norm, batch) on CIFAR-shaped uint8 images that live on
the device, with the crop-and-flip augmentation and the normalization on the device:

- **reference** (arm 0): the plain packed loop a researcher writes: per step, index the step's images,
  augment and normalize them, the vmapped forward (:class:`src.sweep.pack.PackedNet`), the members'
  cross-entropy summed, ``backward()``, ``torch.optim.SGD`` (momentum, weight decay, foreach) and
  ``zero_grad``; on CUDA the forward through ``torch.compile`` as a researcher would.
- **normlab** (arm 1): what ``fused_step=auto`` trains (:mod:`src.training.epoch_loop`): the epoch drawn
  and augmented on the device at once, the learning rate of each step on the device, and
  :class:`src.training.fused_step.FusedSGDStep` (``compile`` on a CPU, one CUDA graph on a GPU).

A block is one epoch of ``--steps`` steps of one arm; its time per step is the block's seconds ÷ steps
(synchronized on a GPU). The rounds bracket every normlab block between two reference blocks
(:func:`benchmarks.ratios.bracketed_rounds`), so a drift of the machine's speed cancels to first order;
``ratio`` = t(normlab) / t(reference) per step, < 1 when normlab is faster, with its 95 % interval.
``runs_per_hour`` is K ÷ normlab's step time, in member steps per hour ÷ the steps of one epoch.
Writes ``results/bench/fused_<device>.csv`` and prints the table with its command, commit and machine.
"""

from __future__ import annotations

import argparse
import functools
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import torch
import torch.nn.functional as F

from benchmarks.packing import build_nets
from benchmarks.ratios import Budget, Estimate, bracketed_log_ratios, bracketed_rounds
from benchmarks.timing import synchronize
from src.data.augment import AUGMENTATIONS
from src.run.atomic import write_text_atomic
from src.run.provenance import git_commit, machine_description
from src.sweep.pack import PackedNet
from src.training.epoch_loop import EpochData, EpochLoop
from src.training.fused_step import FusedSGDStep, SGDSettings, resolve_mode

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "results" / "bench"
SETTINGS = SGDSettings(momentum=0.9, weight_decay=1e-4)
AUGMENT = AUGMENTATIONS["crop_flip_reflect"]


def fake_datamodule(batch: int, steps: int, seed: int) -> SimpleNamespace:
    """What :class:`src.training.epoch_loop.EpochData` reads of a datamodule: a uint8 CIFAR-shaped split."""
    generator = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (batch * steps, 3, 32, 32), dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, 10, (batch * steps,), generator=generator)
    split = SimpleNamespace(tensors=(images, labels))
    mean, std = torch.full((1, 3, 1, 1), 0.47), torch.full((1, 3, 1, 1), 0.25)
    return SimpleNamespace(splits={"train": split}, augment=AUGMENT, mean=mean, std=std, batch_size=batch)


class Reference:
    """The plain packed loop (arm 0): see the module docstring."""

    def __init__(self, nets: list[torch.nn.Module], data: list[SimpleNamespace], device: torch.device):
        self.net = PackedNet(nets).to(device).train()
        self.forward = torch.compile(self.net) if device.type == "cuda" else self.net
        self.optimizer = torch.optim.SGD(self.net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4, foreach=True)
        self.images = torch.stack([d.splits["train"].tensors[0] for d in data]).to(device)  # (K, M, C, H, W)
        self.labels = torch.stack([d.splits["train"].tensors[1] for d in data]).to(device)
        self.mean, self.std = data[0].mean.to(device), data[0].std.to(device)
        self.batch = data[0].batch_size
        self.device = device

    def epoch(self) -> int:
        k, count = self.labels.shape
        order = torch.randperm(count, device=self.device)
        steps = count // self.batch
        for step in range(steps):
            index = order[step * self.batch : (step + 1) * self.batch]
            raw = self.images[:, index].flatten(0, 1).float().div_(255.0)
            images = ((AUGMENT(raw, mean=self.mean) - self.mean) / self.std).unflatten(0, (k, self.batch))
            logits = self.forward(images)
            loss = sum(F.cross_entropy(logits[i], self.labels[i, index]) for i in range(k))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        return steps


class Normlab:
    """normlab's fused loop (arm 1)."""

    def __init__(self, nets: list[torch.nn.Module], data: list[SimpleNamespace], device: torch.device, mode: str):
        self.net = PackedNet(nets).to(device).train()
        mode = resolve_mode(mode, device) or "eager"
        step = FusedSGDStep(self.net, list(self.net.parameters()), SETTINGS, mode=mode)
        epoch_data = EpochData(data, data[0].batch_size, device)
        self.loop = EpochLoop(step, epoch_data, lambda _: 1.0, torch.full((len(nets),), 0.01))
        self.mode = mode

    def epoch(self) -> int:
        self.loop.run_epoch()
        return self.loop.steps_per_epoch


def timed_epoch(arm: Reference | Normlab, device: torch.device) -> float:
    """Seconds per step of one epoch of ``arm`` (synchronized on a GPU)."""
    synchronize(device)
    started = time.perf_counter()
    steps = arm.epoch()
    synchronize(device)
    return (time.perf_counter() - started) / steps


def measure(
    model: str, norm: str, batch: int, k: int, steps: int, device: torch.device, budget: Budget, mode: str = "auto"
) -> dict:
    """One row: the cell's ratio t(normlab) / t(reference) per step, with its interval."""
    data = [fake_datamodule(batch, steps, seed) for seed in range(k)]
    reference = Reference(build_nets(model, norm, k, device), data, device)
    normlab = Normlab(build_nets(model, norm, k, device), data, device, mode)
    for _ in range(2):  # warm up: compilation, graph capture, the allocator
        timed_epoch(reference, device)
        timed_epoch(normlab, device)
    sequence, rounds, seconds = bracketed_rounds(
        functools.partial(timed_epoch, reference, device), {1: functools.partial(timed_epoch, normlab, device)}, budget
    )
    # the arm's label is 1: bracketed_log_ratios gives log(t_ref / t_normlab); the table shows its inverse
    estimate = Estimate.of(bracketed_log_ratios(sequence)[1])
    normlab_s = [s for arm, s in sequence if arm == 1]
    reference_s = [s for arm, s in sequence if arm == 0]
    step_ms = 1e3 * sorted(normlab_s)[len(normlab_s) // 2]
    return {
        "model": model,
        "norm": norm,
        "batch": batch,
        "K": k,
        "mode": normlab.mode,
        "step_ms_normlab": round(step_ms, 3),
        "step_ms_reference": round(1e3 * sorted(reference_s)[len(reference_s) // 2], 3),
        "ratio": round(1 / estimate.ratio, 3),
        "ci95_low": round(1 / estimate.high, 3),
        "ci95_high": round(1 / estimate.low, 3),
        "blocks": estimate.n,
        "member_steps_per_s": round(k / (step_ms / 1e3), 1),
        "rounds": rounds,
        "seconds": round(seconds, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--model", default="resnet8")
    parser.add_argument("--norm", default="gn")
    parser.add_argument("--batches", default="2,32")
    parser.add_argument("--ks", default="8")
    parser.add_argument("--steps", type=int, default=24, help="steps of one block (an epoch of the fake split)")
    parser.add_argument("--max-seconds", type=float, default=120.0, help="per cell")
    parser.add_argument("--min-rounds", type=int, default=6)
    parser.add_argument("--mode", default="auto", help="normlab's fused_step (auto: graph on CUDA, eager on CPU)")
    parser.add_argument("--out", default=str(OUT))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cpu":
        torch.set_num_threads(1)  # one thread: the step's own overhead, as the throughput bench times it
    budget = Budget(precision=0.02, min_rounds=args.min_rounds, min_seconds=0.0, max_seconds=args.max_seconds)
    rows = [
        measure(args.model, args.norm, int(batch), int(k), args.steps, device, budget, args.mode)
        for k in args.ks.split(",")
        for batch in args.batches.split(",")
    ]
    table = pd.DataFrame(rows)
    command = "python -m benchmarks.fused " + " ".join(argv if argv is not None else sys.argv[1:])
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
    machine = machine_description()
    where = (
        torch.cuda.get_device_name(0)
        if device.type == "cuda"
        else f"{machine['processor']} CPU, {machine['cpu_count']} cores"
    )
    header = f"# {command.strip()}\n# commit {git_commit()}, {where} ({machine['hostname']}), {stamp}\n"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    write_text_atomic(out / f"fused_{device.type}.csv", header + table.to_csv(index=False))
    print(header + table.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
