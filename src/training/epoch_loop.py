"""The fused training loop: one Lightning ``training_step`` per *epoch*, the epoch's steps inside it.

Lightning keeps what it is good at (checkpoints, validation and test loops, loggers, callbacks, the
progress and summary lines), all once per epoch; the hot loop has no Lightning hook, no optimizer
object, no host read. We chose this epoch-level inner loop over Lightning Fabric because a run keeps
one LightningModule whose checkpoints, callbacks and validation are those of every other normlab run
(resume, records and tests stay one code path), while Fabric would need a second trainer loop.

Per epoch (:meth:`EpochLoop.run_epoch`):

1. :class:`EpochData` draws every member's epoch on the device at once: its own permutation of its
   training split (last partial batch dropped, as the loaders do), the dataset's augmentation, the
   normalization, each inside the member's own RNG (a pack's :class:`src.sweep.pack.members.MemberRng`;
   the global RNG for a single run). The result is (S, K, N, C, H, W): step, member, batch.
2. The learning rate of every step of the epoch is the rule of :mod:`src.training.module`
   (:func:`src.training.module.lr_factor`), written to one (S, K) device tensor.
3. S calls of :class:`src.training.fused_step.FusedSGDStep`; the losses are summed on the device and
   read back once, at the epoch's end.

Progress inside the epoch: every :data:`PROGRESS_SECONDS` (a host clock read a step, no device read) the
loop tells the Trainer's callbacks that have an ``on_fused_steps(trainer, module, done, total)`` hook
(:func:`report_fused_steps`: the progress bars and the heartbeat lines of :mod:`src.training.callbacks`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from src.training.fused_step import FusedSGDStep

PROGRESS_SECONDS = 0.5  # how often the fused loop reports its steps inside an epoch


def steps_per_batch(module: Any) -> int:
    """Optimizer steps one Lightning training batch of ``module`` stands for: an epoch's under the fused
    loop (its ``loop``), else 1."""
    loop = getattr(module, "loop", None)
    return int(loop.steps_per_epoch) if loop is not None and hasattr(loop, "steps_per_epoch") else 1


def report_fused_steps(trainer: Any, module: Any, done: int, total: int) -> None:
    """Call ``on_fused_steps(trainer, module, done, total)`` on each of the Trainer's callbacks that has it."""
    for callback in getattr(trainer, "callbacks", None) or ():
        hook = getattr(callback, "on_fused_steps", None)
        if hook is not None:
            hook(trainer, module, done, total)


def same_loop(fused: str | None, saved: dict[str, Any] | None) -> dict[str, Any] | None:
    """The fused loop's state from a checkpoint, after checking that the run resumes with the loop it was
    written by (the two keep their momentum and step count in different places)."""
    if (fused is not None) != (saved is not None):
        written = "a fused_step mode" if saved is not None else "fused_step=off"
        raise ValueError(
            f"fused_step={fused or 'off'}: this checkpoint was written with {written}; resume it with the same "
            "fused_step, or retrain with force=true"
        )
    return saved


class EpochData:
    """Every member's training split on ``device`` (uint8, copied once), drawn per epoch.

    Args:
        datamodules: each member's set-up datamodule (``splits``, ``augment``, ``mean``, ``std``).
        batch: images per step and member.
        rng_contexts: per member, a callable giving the context its draws happen in (its own RNG).
    """

    def __init__(
        self,
        datamodules: Sequence[Any],
        batch: int,
        device: torch.device,
        rng_contexts: Sequence[Callable[[], AbstractContextManager[Any]]] | None = None,
    ):
        self.datamodules = list(datamodules)
        self.batch = batch
        self.device = device
        self.contexts = list(rng_contexts) if rng_contexts is not None else [nullcontext] * len(self.datamodules)
        self.splits: list[tuple[torch.Tensor, torch.Tensor]] = []
        first: tuple[torch.Tensor, torch.Tensor] | None = None
        for datamodule in self.datamodules:
            images, labels = datamodule.splits["train"].tensors
            if first is not None and torch.equal(images, first[0]) and torch.equal(labels, first[1]):
                self.splits.append(self.splits[0])  # the members' split is one (seeds differ, data not): one copy
                continue
            first = first or (images, labels)
            self.splits.append((images.to(device), labels.to(device)))
        counts = {len(labels) for _, labels in self.splits}
        if len(counts) != 1:
            raise ValueError(f"a pack's members need training splits of one size; they have {sorted(counts)}")
        self.steps = counts.pop() // batch
        if self.steps < 1:
            raise ValueError(f"batch={batch} is larger than the training split ({len(self.splits[0][1])} images)")

    def draw(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The epoch's batches: images (S, K, N, C, H, W) float, labels (S, K, N)."""
        used = self.steps * self.batch
        images_out, labels_out = [], []
        for datamodule, (images, labels), context in zip(self.datamodules, self.splits, self.contexts, strict=True):
            with context():
                order = torch.randperm(len(labels), device=self.device)[:used]
                batch = images[order].float().div_(255.0)
                if datamodule.augment is not None:
                    batch = datamodule.augment(batch, mean=datamodule.mean)
            mean, std = datamodule.mean.to(self.device), datamodule.std.to(self.device)
            images_out.append(((batch - mean) / std).reshape(self.steps, self.batch, *batch.shape[1:]))
            labels_out.append(labels[order].reshape(self.steps, self.batch))
        return torch.stack(images_out, dim=1), torch.stack(labels_out, dim=1)


class EpochLoop:
    """One epoch of fused steps (see the module docstring).

    Args:
        step: the fused step over the members' stacked parameters.
        data: the members' epoch data.
        lr_at: the learning-rate multiplier at a global step (warmup and schedule).
        base_lr: (K,) each member's scaled learning rate.
    """

    def __init__(self, step: FusedSGDStep, data: EpochData, lr_at: Callable[[int], float], base_lr: torch.Tensor):
        self.step = step
        self.data = data
        self.lr_at = lr_at
        self.base_lr = base_lr.to(data.device)
        self.steps_done = 0  # global steps trained (a checkpoint keeps it)
        self.last_lr = float("nan")

    def state(self) -> dict[str, Any]:
        """What a checkpoint keeps of the loop: the steps done and the step's momentum."""
        return {"steps_done": self.steps_done, "step": self.step.state_dict()}

    def restore(self, saved: dict[str, Any] | None) -> None:
        """Continue from a checkpoint's :meth:`state` (nothing for None: a fresh run)."""
        if saved is not None:
            self.steps_done = int(saved["steps_done"])
            self.step.load_state_dict(saved["step"])

    @property
    def steps_per_epoch(self) -> int:
        return self.data.steps

    def run_epoch(self, on_steps: Callable[[int], None] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Train one epoch; returns the members' mean loss over it and their last step's loss (K,),
        device tensors (the caller reads them once). ``on_steps(done)`` is called at most every
        :data:`PROGRESS_SECONDS` with the steps of the epoch done so far."""
        images, labels = self.data.draw()
        factors = [self.lr_at(self.steps_done + i) for i in range(self.data.steps)]
        lrs = torch.tensor(factors, device=self.data.device, dtype=torch.float32)[:, None] * self.base_lr[None, :]
        total = torch.zeros(images.shape[1], device=self.data.device)
        last = total
        reported = time.perf_counter()
        for index in range(self.data.steps):
            last = self.step(images[index], labels[index], lrs[index])
            total += last
            if on_steps is not None and time.perf_counter() - reported >= PROGRESS_SECONDS:
                on_steps(index + 1)
                reported = time.perf_counter()
        self.steps_done += self.data.steps
        # as torch's scheduler reports it after the epoch's last step: the next step's lr
        self.last_lr = float(self.lr_at(self.steps_done) * self.base_lr[0])
        return total / self.data.steps, last.clone()
