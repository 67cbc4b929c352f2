"""The two loops a step-time benchmark sets against each other, and how they are timed side by side.

The reference is the plainest training step (:class:`HandSteps`, :func:`hand_loop`: in-memory tensors, forward,
cross-entropy, backward, SGD with momentum); normlab's is Lightning ``fit`` with normlab's module and
datamodule (:func:`normlab_loop`) or the whole ``src.train`` path (:mod:`benchmarks.embedded`). On a CPU the
two are timed in interleaved blocks inside one fit (:class:`InterleavedBlocks`), so both see the same machine
state; their ratio is reported as the median over repetitions with its spread (:func:`ratio_and_spread`).
"""

from __future__ import annotations

import statistics
import time

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F

from benchmarks.timing import per_step, synchronize, timed_steps
from src.data.arrays import ArrayDataModule, ImageArrays
from src.models import CifarResNet
from src.norms import Normalization
from src.training.callbacks import TrainTimer
from src.training.module import Classifier
from src.training.perf import compile_for_training

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


def ratio_and_spread(ours: list[float], hands: list[float]) -> tuple[float, float]:
    """The median of the repetitions' normlab / hand ratios, and their spread, (max − min) / median: two
    runs of the bench can only agree to about the spread."""
    ratios = [o / h for o, h in zip(ours, hands, strict=True)]
    ratio = statistics.median(ratios)
    return ratio, (max(ratios) - min(ratios)) / ratio
