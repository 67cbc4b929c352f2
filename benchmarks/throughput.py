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
the speedup printed with its 95 % interval. It prints a table with ratios and writes
``results/bench/throughput.csv`` (and ``sweep.csv``, with every sweep's wall and CPU seconds in
``sweep_blocks.csv``) naming the machine and date.
"""

from __future__ import annotations

import argparse
import functools
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import psutil
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from benchmarks.ratios import REFERENCE, Budget, Estimate, bracketed_log_ratios, bracketed_rounds
from benchmarks.timing import per_step, synchronize, timed_steps
from src.data.arrays import ArrayDataModule, ImageArrays
from src.models import CifarResNet
from src.norms import Normalization
from src.run.atomic import write_text_atomic
from src.run.provenance import git_commit, inside_project
from src.training.callbacks import TrainTimer
from src.training.module import Classifier
from src.training.perf import compile_for_training
from src.training.single import train

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
NORM = Normalization("bn", layer=torch.nn.BatchNorm2d, batch_dependent=True)


class RandomCifar(ArrayDataModule):
    """CIFAR-10-shaped random images, so the benchmark needs no dataset."""

    def __init__(self, size: int, **kwargs):
        super().__init__(name="random_cifar", val_size=8, **kwargs)
        self.size = size

    def load_arrays(self) -> ImageArrays:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (self.size, 32, 32, 3), dtype=np.uint8)
        labels = rng.integers(0, 10, self.size)
        return ImageArrays(images, labels, images[:8], labels[:8])


def model() -> torch.nn.Module:
    torch.manual_seed(0)
    return CifarResNet((3, 32, 32), 10, NORM, depth=20)


def hand_loop(device: torch.device, batch: int, steps: int, warmup: int, compile_mode: str | None) -> float:
    """Seconds per step of the plainest loop: data on the device, forward, backward, SGD."""
    net = model().to(device)
    step_net = compile_for_training(net, compile_mode) if compile_mode else net
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    images = torch.randn(batch * 8, 3, 32, 32, device=device)
    labels = torch.randint(0, 10, (batch * 8,), device=device)
    position = 0

    def step() -> None:
        nonlocal position
        index = slice((position % 8) * batch, (position % 8 + 1) * batch)
        position += 1
        loss = F.cross_entropy(step_net(images[index]), labels[index])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    times = timed_steps(step, steps, device)
    return per_step(device, times, sum(times), steps)


class StepTimer(TrainTimer):
    """Seconds per step after ``warmup`` steps (excludes Lightning's start-up and compilation), as
    :func:`per_step` reads them: each step's own time (batch end to batch end) on a CPU, the block on a GPU."""

    def __init__(self, warmup: int, device: torch.device):
        super().__init__()
        self.warmup, self.device, self.started, self.steps = warmup, device, 0.0, 0
        self.step_times: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.warmup:
            synchronize(self.device)
            self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.step_times = list(self._steps[self.warmup :])
        super().on_train_epoch_end(trainer, pl_module)

    def on_train_end(self, trainer, pl_module) -> None:
        synchronize(self.device)
        self.steps = trainer.global_step - self.warmup
        times = self.step_times or list(self._steps[self.warmup :])  # the epoch may not have ended
        self.seconds = per_step(self.device, times, time.perf_counter() - self.started, self.steps)


class HandSteps:
    """The plainest training step over in-memory tensors: forward, backward, SGD (no loader, no hooks)."""

    def __init__(self, net: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch: int):
        self.net, self.images, self.labels, self.batch = net, images, labels, batch
        self.optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
        self.order, self.position = torch.randperm(len(labels)), 0

    def step(self) -> float:
        """One step on the next ``batch`` images (in a fixed random order); its seconds."""
        started = time.perf_counter()
        if self.position + self.batch > len(self.order):
            self.position = 0
        index = self.order[self.position : self.position + self.batch]
        self.position += self.batch
        loss = F.cross_entropy(self.net(self.images[index]), self.labels[index])
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return time.perf_counter() - started


class InterleavedBlocks(pl.Callback):
    """Paired timing on a CPU, inside one fit: after every ``block`` of normlab's steps, ``block`` hand
    steps run, so both sides of the ratio see the same machine state (this VM's speed drifts by tens of
    percent over seconds, which timing the two loops one after the other turns into noise in the ratio).

    normlab's step is batch end to batch end with the hand block left out: data, hooks, step and every
    other callback. ``warmup`` steps of each are not timed. Add it last, so its hook runs after the others.

    The fused loop (``fused_step``, one Lightning batch an epoch) is timed per epoch instead: its training
    tick (the epoch's draw and all its steps) divided by its steps, then as many hand steps as one block,
    likewise per step; its first epoch (which builds the loop) is the warm-up.
    """

    def __init__(self, hand: HandSteps, block: int, warmup: int):
        self.hand, self.block, self.warmup = hand, max(1, block), warmup
        self.normlab_times: list[float] = []
        self.hand_times: list[float] = []
        self._mark: float | None = None
        self._tick = 0.0

    def on_train_start(self, trainer, pl_module) -> None:
        for _ in range(self.warmup):
            self.hand.step()

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        self._tick = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, *args) -> None:
        now, step = time.perf_counter(), trainer.global_step
        if getattr(pl_module, "fused", None) is not None:
            steps = pl_module.loop.steps_per_epoch
            if trainer.current_epoch >= 1:
                self.normlab_times.append((now - self._tick) / steps)
                self.hand_times.append(sum(self.hand.step() for _ in range(steps)) / steps)
            return
        if self._mark is not None and step > self.warmup:
            self.normlab_times.append(now - self._mark)
        if step >= self.warmup and step % self.block == 0:
            self.hand_times += [self.hand.step() for _ in range(self.block)]
        self._mark = time.perf_counter()

    def medians(self) -> tuple[float, float]:
        """(normlab's, the hand loop's) median seconds per step."""
        return float(statistics.median(self.normlab_times)), float(statistics.median(self.hand_times))


def block_size(steps: int) -> int:
    """Steps per block: at least 8 alternations in ``steps``, at most 10 steps a block."""
    return max(1, min(10, steps // 8))


_PENDING: list[InterleavedBlocks] = []


def pending_blocks() -> InterleavedBlocks:
    """The callback :func:`embedded_pair` handed over, built by ``src.train`` from ``callbacks.hand_blocks``
    (a run's callbacks are Hydra configs; this is how a live object gets into one)."""
    return _PENDING.pop()


def normlab_loop(
    device: torch.device,
    batch: int,
    steps: int,
    warmup: int,
    compile_mode: str | None,
    blocks: InterleavedBlocks | None = None,
) -> float:
    """Seconds per step of normlab's own loop: Lightning fit with normlab's module and datamodule
    (with ``blocks``, the hand loop's blocks interleaved: read them from ``blocks.medians()``)."""
    datamodule = RandomCifar(size=batch * (steps + warmup) + 8, batch_size=batch)
    datamodule.setup()
    module = Classifier(
        model(),
        optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=1e-4),
        num_classes=10,
        global_batch=batch,
        compile_mode=compile_mode,
    )
    timer = StepTimer(warmup, device)
    trainer = pl.Trainer(
        accelerator=device.type if device.type != "cuda" else "gpu",
        devices=1,
        max_epochs=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[timer, *([blocks] if blocks else [])],
    )
    trainer.fit(module, datamodule=datamodule)
    return timer.seconds


def resnet_pair(batch: int, steps: int, warmup: int) -> tuple[float, float]:
    """(normlab, hand) median seconds per step of ResNet-20 on a CPU, timed in interleaved blocks."""
    hand = HandSteps(model(), torch.randn(batch * 8, 3, 32, 32), torch.randint(0, 10, (batch * 8,)), batch)
    blocks = InterleavedBlocks(hand, block_size(steps), warmup)
    normlab_loop(torch.device("cpu"), batch, steps, warmup, None, blocks)
    return blocks.medians()


#: the fused loop's timed epochs (after one warm-up epoch) in one embedded cell
FUSED_EPOCHS = 8


def embedded_config(batch: int, steps: int, threads: int, loop: str = "auto"):
    """The default run (small CNN, bn, the default embedded dataset) sized to ``steps`` timed steps: one
    epoch for the per-step loop (``loop`` off), 1 + :data:`FUSED_EPOCHS` epochs of ``steps`` /
    FUSED_EPOCHS steps (at least 10) for the fused loop (``fused_step=auto``, the default)."""
    per_epoch = steps if loop == "off" else max(10, steps // FUSED_EPOCHS)
    overrides = [
        f"batch={batch}",
        f"epochs={1 if loop == 'off' else 1 + FUSED_EPOCHS}",
        f"dataset.train_size={batch * (per_epoch + 1)}",
        "logger=none",
        "force=true",
        f"cpu_threads={threads}",
        f"fused_step={loop}",
    ]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def embedded_pair(batch: int, steps: int, threads: int, run_dir: Path, loop: str = "auto") -> tuple[float, float, str]:
    """(normlab, hand) median seconds per step of the default run, and the loop it trained with: normlab's
    full ``src.train`` path, with a minimal loop on the run's own model and images (normalized once)
    interleaved in blocks."""
    torch.set_num_threads(threads)
    cfg = embedded_config(batch, steps, threads, loop)
    torch.manual_seed(cfg.seed)
    datamodule = instantiate(cfg.dataset)
    datamodule.setup("fit")
    images, labels = datamodule.splits["train"].tensors
    images = (images.float() / 255.0 - datamodule.mean) / datamodule.std
    net = instantiate(
        cfg.model, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes, norm=instantiate(cfg.norm)
    )
    blocks = InterleavedBlocks(HandSteps(net, images, labels, batch), block_size(steps), warmup=3)
    _PENDING.append(blocks)
    OmegaConf.set_struct(cfg, False)
    cfg.callbacks = {**(cfg.get("callbacks") or {}), "hand_blocks": {"_target_": f"{__name__}.pending_blocks"}}
    record = train(cfg, run_dir)
    return (*blocks.medians(), str(record["timing"].get("fused_step", "per-step")))


def ratio_and_spread(ours: list[float], hands: list[float]) -> tuple[float, float]:
    """The median of the repetitions' normlab / hand ratios, and their spread, (max − min) / median: two
    runs of the bench can only agree to about the spread."""
    ratios = [o / h for o, h in zip(ours, hands, strict=True)]
    ratio = statistics.median(ratios)
    return ratio, (max(ratios) - min(ratios)) / ratio


def embedded_table(
    batches: list[int], steps: int, reps: int, threads: list[int], loops: Sequence[str] = ("auto", "off")
) -> pd.DataFrame:
    """Hand loop vs normlab's full run path on the default small CNN and embedded data, interleaved in
    blocks (:class:`InterleavedBlocks`), for each ``fused_step`` in ``loops`` (the default ``auto`` and the
    per-step ``off``): median step times, and :func:`ratio_and_spread` of the repetitions' ratios."""
    rows = []
    run_dir = ROOT / "multirun" / "bench_embedded"
    for loop in loops:
        for thread_count in threads:
            for batch in batches:
                steps_here = max(steps * 2 // batch, min(steps, 120))  # as many images as `steps` at batch 2
                hand, ours, trained = [], [], ""
                for _ in range(reps):
                    our, theirs, trained = embedded_pair(batch, steps_here, thread_count, run_dir, loop)
                    ours.append(our)
                    hand.append(theirs)
                hand_s, ours_s = float(np.median(hand)), float(np.median(ours))
                ratio, spread = ratio_and_spread(ours, hand)
                rows.append(
                    {
                        "model": "small_cnn",
                        "data": str(embedded_config(batch, 1, thread_count).dataset.name),
                        "fused_step": loop,
                        "loop": trained,
                        "batch": batch,
                        "threads": thread_count,
                        "hand_ms": 1e3 * hand_s,
                        "normlab_ms": 1e3 * ours_s,
                        "normlab_over_hand": ratio,
                        "spread": spread,
                        "reps": reps,
                    }
                )
                print(
                    f"  small_cnn fused_step={loop} ({trained}) batch {batch:>3} threads {thread_count}"
                    f"  hand {1e3 * hand_s:7.2f} ms  normlab {1e3 * ours_s:7.2f} ms"
                    f"  ratio {ratio:5.2f} (spread {spread:.2f}, {reps} reps)",
                    flush=True,
                )
    return pd.DataFrame(rows)


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
    jobs: int, budget: Budget = SWEEP_BUDGET, study: tuple[str, ...] = SWEEP_STUDY
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs per hour of a small study (default: digits, 8 epochs, 4 runs), sequential vs
    ``hydra/launcher=parallel``: whole sweeps as blocks, sequential, parallel, sequential, parallel, ...,
    sequential, so each parallel sweep is bracketed by two sequential ones (:mod:`benchmarks.ratios`),
    until ``budget`` says done (by default a fixed window). Returns the table (one row per launcher; the
    parallel row's ``speedup`` is the mean bracketed ratio with its interval) and the blocks: every sweep
    in the order it ran, its launcher, wall seconds and CPU seconds (of its processes, all cores)."""
    extra = {"sequential": [], "parallel": ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"]}
    runs = math.prod(len(value.split(",")) for value in study)  # the grid of the swept overrides
    cpu_seconds: list[float] = []

    def sweep(launcher: str) -> float:
        sweep_dir = ROOT / "multirun" / f"bench_{launcher}"
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
        embedded = embedded_table([2, 32], args.embedded_steps, args.reps, threads, args.loops.split(","))
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
        sweep, blocks = sweep_throughput(args.jobs, budget)
        print(sweep.round(2).to_string(index=False))
        write_text_atomic(out / "sweep.csv", sweep.assign(**stamp).round(3).to_csv(index=False))
        write_text_atomic(out / "sweep_blocks.csv", blocks.assign(**stamp).round(3).to_csv(index=False))
    print(f"wrote {out}/")


if __name__ == "__main__":
    main()
