"""The LightningModule: cross-entropy classification with the configured optimizer and lr schedule.

The learning-rate rule (:func:`lr_rule`: the scaled learning rate, the schedule, the warmup) and the
optimizer and per-step scheduler built from it (:func:`optimizer_and_schedule`) are functions, so a
packed run's module (:class:`src.sweep.pack.module.PackedClassifier`) trains by the same rule.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from src.schedules import Schedule, check_schedule, cosine, warmed_up
from src.training.epoch_loop import EpochData, EpochLoop, report_fused_steps, same_loop
from src.training.fused_step import FusedSGDStep, sgd_settings
from src.training.perf import compile_for_training

log = logging.getLogger(__name__)


def scaled_lr(base_lr: float, batch: int, base_batch: int, scale: bool) -> float:
    """The GN paper's linear scaling rule: lr = base_lr × batch / base_batch (when ``scale``)."""
    return base_lr * batch / base_batch if scale else base_lr


@dataclass(frozen=True)
class LearningRateRule:
    """How a run's parameters are optimized: the optimizer constructor, the (scaled) learning rate, the
    schedule (the lr multiplier as a function of the fraction of training done) and the warmup epochs."""

    optimizer: Callable[..., torch.optim.Optimizer]
    lr: float
    schedule: Schedule
    warmup_epochs: float


def lr_rule(
    optimizer: Callable[..., torch.optim.Optimizer],
    global_batch: int,
    base_lr: float = 0.1,
    base_batch: int = 32,
    scale_lr: bool = True,
    schedule: Schedule = cosine,
    warmup_epochs: float = 0.0,
) -> LearningRateRule:
    """The learning-rate rule of ``optim`` (:func:`src.training.experiment.lr_arguments`) for a run whose
    optimizer step sees ``global_batch`` images: lr = base_lr × global_batch / base_batch when
    ``scale_lr``. A non-positive ``base_lr`` or a negative warmup fails with one line naming the key."""
    if base_lr <= 0:
        raise ValueError(f"optim.base_lr={base_lr} is invalid: it must be > 0")
    if not warmup_epochs >= 0:
        raise ValueError(f"optim.warmup_epochs={warmup_epochs} is invalid: it must be >= 0 (epochs of linear warmup)")
    lr = scaled_lr(base_lr, global_batch, base_batch, scale_lr)
    return LearningRateRule(optimizer, lr, check_schedule(schedule), warmup_epochs)


def lr_factor(rule: LearningRateRule, total_steps: int, max_epochs: int) -> Callable[[int], float]:
    """The learning-rate multiplier at optimizer step ``t`` of ``total_steps``: linear warmup over the
    rule's first ``warmup_epochs`` / ``max_epochs`` of training, then its schedule at t / total_steps. The
    one definition used by the optimizer's scheduler and by the fused loop (:mod:`src.training.epoch_loop`)."""
    total = max(1, int(total_steps))
    warmup = rule.warmup_epochs / max(1, max_epochs)

    def factor(step: int) -> float:
        return warmed_up(rule.schedule, step / total, warmup)

    return factor


def optimizer_and_schedule(rule: LearningRateRule, params: Iterable[Any], trainer: pl.Trainer) -> dict[str, Any]:
    """What ``configure_optimizers`` returns: the rule's optimizer over ``params`` at its learning rate,
    and a scheduler stepped every optimizer step (linear warmup, then the schedule over the trainer's
    estimated steps)."""
    optimizer = rule.optimizer(params=params, lr=rule.lr)
    factor = lr_factor(rule, int(trainer.estimated_stepping_batches), trainer.max_epochs or 1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
    return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class Classifier(pl.LightningModule):
    """Trains ``net`` with cross-entropy; logs train loss and validation/test error in percent.

    Args:
        net: the image classifier.
        num_classes: the number of classes (for the error metrics).
        global_batch: the images one optimizer step sees (per-device batch × world size), for the
            learning-rate scaling rule.
        compile_mode: when set, training steps run ``torch.compile(net, mode=compile_mode)``
            (e.g. ``default``, ``reduce-overhead`` for CUDA graphs); evaluation stays eager.
        **lr: the learning-rate rule (:func:`lr_rule`): ``optimizer``, a partial optimizer constructor
            taking ``params`` and ``lr`` (Hydra ``_partial_``); ``schedule``, the lr multiplier as a
            function of the fraction of training done (:mod:`src.schedules`, a Hydra ``_partial_``),
            applied every step; ``base_lr``, ``base_batch``, ``scale_lr``: lr = base_lr × global_batch /
            base_batch when ``scale_lr``; ``warmup_epochs``: epochs of linear warmup at the start (0: none).
        fused: ``eager``, ``compile`` or ``graph``: train through the fused epoch loop
            (:mod:`src.training.epoch_loop`, the datamodule serving one tick per epoch); None: Lightning's
            per-step loop with ``torch.optim``.
    """

    def __init__(
        self,
        net: nn.Module,
        num_classes: int,
        global_batch: int,
        compile_mode: str | None = None,
        fused: str | None = None,
        **lr: Any,
    ):
        super().__init__()
        self.fused = fused
        self.automatic_optimization = fused is None
        self.loop: EpochLoop | None = None
        self._loaded_loop: dict[str, Any] | None = None
        self.rule = lr_rule(global_batch=global_batch, **lr)
        self.net = net
        # training steps may run through a compiled view of the same module (parameters shared); kept
        # out of the module tree so checkpoints and parameter lists see `net` once
        self.__dict__["train_net"] = compile_for_training(net, compile_mode) if compile_mode else net
        self.lr = self.rule.lr
        self.schedule = self.rule.schedule
        self.val_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.test_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.best_val_error = math.inf
        self.last_val_error = math.nan
        self.loss_sum = torch.zeros(())
        self.loss_count = 0
        self.curve: list[dict[str, float]] = []  # one entry per epoch: the run record's curve

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def fused_loop(self) -> EpochLoop:
        """The epoch loop of this run (a pack of one), built on the first epoch, on the device."""
        if self.loop is None:
            datamodule = self.trainer.datamodule
            data = EpochData([datamodule], datamodule.batch_size, self.device)
            net = self.net
            settings = sgd_settings(self.rule.optimizer)
            step = FusedSGDStep(
                lambda x: net(x[0]).unsqueeze(0), list(net.parameters()), settings, mode=self.fused, members=1
            )
            epochs = int(self.trainer.max_epochs or 1)
            self.loop = EpochLoop(
                step, data, lr_factor(self.rule, data.steps * epochs, epochs), torch.tensor([self.lr])
            )
            self.loop.restore(self._loaded_loop)
        return self.loop

    def steps_trained(self) -> int:
        """Optimizer steps trained so far (the fused loop counts its own; Lightning's for the other)."""
        return self.loop.steps_done if self.loop is not None else int(self.trainer.global_step)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        if self.fused is not None:  # the batch is the epoch's tick: the loop draws the epoch itself
            loop = self.fused_loop()
            mean, last = loop.run_epoch(lambda done: report_fused_steps(self.trainer, self, done, loop.steps_per_epoch))
            self.loss_sum, self.loss_count = mean[0], 1
            return last[0]  # the epoch's last loss, for DivergenceGuard
        images, labels = batch
        loss = F.cross_entropy(self.train_net(images), labels)
        # summed on the device and logged once per epoch: Lightning's per-step logging costs more than a
        # small CNN's step at batch 2 on a CPU
        self.loss_sum += loss.detach()
        self.loss_count += 1
        return loss

    def on_train_epoch_start(self) -> None:
        self.loss_sum = torch.zeros((), device=self.device)
        self.loss_count = 0

    def on_train_epoch_end(self) -> None:
        """Log the epoch's mean training loss, add the epoch to :attr:`curve` (train loss averaged over
        ranks, the validation error run just before this hook, the lr of the epoch's last step), and
        log one summary line."""
        loss = (self.loss_sum / self.loss_count).item() if self.loss_count else math.nan
        self.log("train/loss", loss, sync_dist=True)  # the mean over ranks under DDP
        if self.loop is not None:
            lr = self.loop.last_lr
        else:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else math.nan
        mean_loss = float(self.trainer.strategy.reduce(torch.tensor(loss, device=self.device), reduce_op="mean"))
        self.curve.append(
            {"epoch": self.current_epoch, "train_loss": mean_loss, "val_error": self.last_val_error, "lr": lr}
        )
        log.info(
            "epoch %d/%d  train_loss %.4f  val_error %.2f%%  lr %.4g",
            self.current_epoch + 1,
            self.trainer.max_epochs,
            loss,
            self.last_val_error,
            lr,
        )

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.val_accuracy.update(self.net(images), labels)

    def on_validation_epoch_end(self) -> None:
        error = 100.0 * (1.0 - self.val_accuracy.compute().item())
        self.val_accuracy.reset()
        if not self.trainer.sanity_checking:
            self.last_val_error = error
            self.best_val_error = min(self.best_val_error, error)
        self.log("val/error", error)

    def test_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        images, labels = batch
        self.test_accuracy.update(self.net(images), labels)

    def on_test_epoch_end(self) -> None:
        self.log("test/error", 100.0 * (1.0 - self.test_accuracy.compute().item()))
        self.test_accuracy.reset()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["normlab"] = {
            "best_val_error": self.best_val_error,
            "last_val_error": self.last_val_error,
            "curve": list(self.curve),
        }
        if self.loop is not None:
            checkpoint["normlab"]["fused"] = self.loop.state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("normlab", {})
        self.best_val_error = state.get("best_val_error", self.best_val_error)
        self.last_val_error = state.get("last_val_error", self.last_val_error)
        self.curve = list(state.get("curve", self.curve))
        self._loaded_loop = same_loop(self.fused, state.get("fused"))

    def configure_optimizers(self) -> dict | None:
        if self.fused is not None:
            return None  # the fused step updates the parameters itself (its momentum is checkpointed)
        return optimizer_and_schedule(self.rule, self.net.parameters(), self.trainer)
