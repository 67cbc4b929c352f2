"""The LightningModule of a pack: the unpacked run's loss, learning-rate rule and optimizer over the
stacked parameters, with every metric, curve and divergence per member."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics.classification import MulticlassAccuracy

from src.sweep.pack.members import MemberRng
from src.sweep.pack.network import PackedNet
from src.training.epoch_loop import EpochData, EpochLoop, report_fused_steps, same_loop
from src.training.fused_step import FusedSGDStep, sgd_settings
from src.training.module import lr_factor, lr_rule, optimizer_and_schedule

log = logging.getLogger(__name__)
DIVERGENCE_EVERY = 25  # steps between loss checks, as src.training.callbacks.DivergenceGuard


class PackedClassifier(pl.LightningModule):
    """:class:`src.training.module.Classifier` for K members at once: the same loss, learning rate, schedule
    and optimizer (over the stacked parameters), with every metric, curve and divergence per member.

    ``fused`` (``eager``, ``compile`` or ``graph``): train through the fused loop
    (:mod:`src.training.epoch_loop`): one ``training_step`` per epoch running the epoch's steps of
    :class:`src.training.fused_step.FusedSGDStep` on data drawn on the device; None: Lightning's per-step
    loop with ``torch.optim`` (the reference the fused step is checked against)."""

    def __init__(
        self,
        net: PackedNet,
        num_classes: int,
        global_batch: int,
        rngs: Sequence[MemberRng],
        fused: str | None = None,
        member_lr: Sequence[float] | None = None,
        member_weight_decay: Sequence[float] | None = None,
        **lr: Any,
    ):
        super().__init__()
        self.fused = fused
        self.member_lr = list(member_lr) if member_lr is not None else None  # each member's scaled lr
        self.member_weight_decay = list(member_weight_decay) if member_weight_decay is not None else None
        self.automatic_optimization = fused is None
        self.loop: EpochLoop | None = None
        self._loaded_loop: dict[str, Any] | None = None
        self.net = net
        self.size = net.size
        self.rngs = list(rngs)
        self.rule = lr_rule(global_batch=global_batch, **lr)  # the unpacked run's rule (src.training.module)
        self.lr = self.rule.lr
        self.val_accuracy = nn.ModuleList(MulticlassAccuracy(num_classes, average="micro") for _ in range(self.size))
        self.test_accuracy = nn.ModuleList(MulticlassAccuracy(num_classes, average="micro") for _ in range(self.size))
        self.best_val_error = [math.inf] * self.size
        self.last_val_error = [math.nan] * self.size
        self.curves: list[list[dict[str, float]]] = [[] for _ in range(self.size)]
        self.diverged: dict[int, str] = {}  # member index -> the unpacked run's divergence message
        self.loss_sum = torch.zeros(self.size)
        self.loss_count = 0
        self.last_losses: torch.Tensor | None = None
        self.last_train_loss = [math.nan] * self.size

    def active(self) -> torch.Tensor:
        """(K,) booleans: the members still training."""
        mask = torch.ones(self.size, dtype=torch.bool)
        for index in self.diverged:
            mask[index] = False
        return mask.to(self.device)

    def member_losses(self, batch: list[list[torch.Tensor]]) -> torch.Tensor:
        images = torch.stack([member[0] for member in batch])
        logits = self.net(images)
        return torch.stack([F.cross_entropy(logits[k], batch[k][1]) for k in range(self.size)])

    def fused_loop(self) -> EpochLoop:
        """The epoch loop over the datamodule's members, built on the first epoch (on the device)."""
        if self.loop is None:
            members = self.trainer.datamodule.members
            data = EpochData(members, members[0].batch_size, self.device, [rng.active for rng in self.rngs])
            settings = sgd_settings(self.rule.optimizer)
            decay = torch.tensor(self.member_weight_decay) if self.member_weight_decay is not None else None
            step = FusedSGDStep(self.net, list(self.net.parameters()), settings, weight_decay=decay, mode=self.fused)
            total = data.steps * int(self.trainer.max_epochs or 1)
            base_lr = torch.tensor(self.member_lr or [float(self.lr)] * self.size)
            self.loop = EpochLoop(step, data, lr_factor(self.rule, total, int(self.trainer.max_epochs or 1)), base_lr)
            self.loop.restore(self._loaded_loop)
            for index in self.diverged:
                step.active[index] = False
        return self.loop

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor | None:
        if self.fused is not None:
            loop = self.fused_loop()
            mean, self.last_losses = loop.run_epoch(
                lambda done: report_fused_steps(self.trainer, self, done, loop.steps_per_epoch)
            )
            self.loss_sum, self.loss_count = mean, 1
            return None
        losses = self.member_losses(batch)
        self.last_losses = losses.detach()
        self.loss_sum += self.last_losses
        self.loss_count += 1
        # each member's gradient is its own loss's; a diverged member leaves the sum
        return torch.where(self.active(), losses, torch.zeros_like(losses)).sum()

    def check_divergence(self) -> None:
        """Record the members whose last loss is not finite, with the unpacked run's message."""
        if self.last_losses is None:
            return
        finite = torch.isfinite(self.last_losses).tolist()
        for index, ok in enumerate(finite):
            if not ok and index not in self.diverged:
                loss = float(self.last_losses[index])
                where = f"step {self.steps_trained()}, epoch {self.trainer.current_epoch}"
                self.diverged[index] = f"training loss is {loss} at {where}"
                log.warning("pack member %d diverged: %s (the others go on)", index, self.diverged[index])
                if self.loop is not None:
                    self.loop.step.active[index] = False
        if len(self.diverged) == self.size:
            self.trainer.should_stop = True

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.fused is None and self.trainer.global_step % DIVERGENCE_EVERY == 0:
            self.check_divergence()

    def on_train_epoch_start(self) -> None:
        self.loss_sum = torch.zeros(self.size, device=self.device)
        self.loss_count = 0

    def on_train_epoch_end(self) -> None:
        self.check_divergence()
        losses = (self.loss_sum / self.loss_count).tolist() if self.loss_count else [math.nan] * self.size
        if self.loop is not None:
            lr = self.loop.last_lr
        else:
            lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else math.nan
        for index in range(self.size):  # a diverged member's curve is not recorded (nor is an unpacked one's)
            self.last_train_loss[index] = losses[index]
            self.curves[index].append(
                {
                    "epoch": self.current_epoch,
                    "train_loss": losses[index],
                    "val_error": self.last_val_error[index],
                    "lr": lr,
                }
            )
        log.info(
            "epoch %d/%d  train_loss %s  val_error %s  lr %.4g",
            self.current_epoch + 1,
            self.trainer.max_epochs,
            " ".join(f"{loss:.4f}" for loss in losses),
            " ".join(f"{error:.2f}%" for error in self.last_val_error),
            lr,
        )

    def _evaluate(self, batch: list[list[torch.Tensor]], metrics: nn.ModuleList) -> None:
        logits = self.net(torch.stack([member[0] for member in batch]))
        for index, metric in enumerate(metrics):
            metric.update(logits[index], batch[index][1])

    def validation_step(self, batch: list[list[torch.Tensor]], batch_idx: int) -> None:
        self._evaluate(batch, self.val_accuracy)

    def on_validation_epoch_end(self) -> None:
        for index, metric in enumerate(self.val_accuracy):
            error = 100.0 * (1.0 - metric.compute().item())
            metric.reset()
            if not self.trainer.sanity_checking:
                self.last_val_error[index] = error
                self.best_val_error[index] = min(self.best_val_error[index], error)

    def test_step(self, batch: list[list[torch.Tensor]], batch_idx: int) -> None:
        self._evaluate(batch, self.test_accuracy)

    def test_errors(self) -> list[float]:
        errors = [100.0 * (1.0 - metric.compute().item()) for metric in self.test_accuracy]
        for metric in self.test_accuracy:
            metric.reset()
        return errors

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["normlab_pack"] = {
            "best_val_error": list(self.best_val_error),
            "last_val_error": list(self.last_val_error),
            "last_train_loss": list(self.last_train_loss),
            "curves": [list(curve) for curve in self.curves],
            "diverged": dict(self.diverged),
            "rng": [rng.state for rng in self.rngs],
        }
        if self.loop is not None:
            checkpoint["normlab_pack"]["fused"] = self.loop.state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("normlab_pack", {})
        self.best_val_error = list(state.get("best_val_error", self.best_val_error))
        self.last_val_error = list(state.get("last_val_error", self.last_val_error))
        self.last_train_loss = list(state.get("last_train_loss", self.last_train_loss))
        self.curves = [list(curve) for curve in state.get("curves", self.curves)]
        self.diverged = {int(k): v for k, v in state.get("diverged", {}).items()}
        for rng, saved in zip(self.rngs, state.get("rng", []), strict=False):
            rng.state = saved
        self._loaded_loop = same_loop(self.fused, state.get("fused"))

    def steps_trained(self) -> int:
        """Optimizer steps trained so far (the fused loop counts its own; Lightning's for the other)."""
        return self.loop.steps_done if self.loop is not None else int(self.trainer.global_step)

    def configure_optimizers(self) -> dict | None:
        if self.fused is not None:
            return None  # the fused step updates the parameters itself (its momentum is checkpointed above)
        return optimizer_and_schedule(self.rule, self.net.parameters(), self.trainer)
