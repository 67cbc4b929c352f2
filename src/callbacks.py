"""Lightning callbacks used by every run."""

from __future__ import annotations

import math
import statistics
import time
from typing import Any

import pytorch_lightning as pl
import torch


class TrainTimer(pl.Callback):
    """Wall time spent in training epochs (data loading and steps, excluding validation), and the median
    time of one step (batch end to batch end), which start-up, compilation and epoch boundaries do not
    skew. The step times of an epoch are kept only until its end."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self.epoch_median_steps: list[float] = []
        self._epoch_start = 0.0
        self._last_batch_end = 0.0
        self._steps: list[float] = []

    @property
    def median_step_seconds(self) -> float:
        """The median over epochs of each epoch's median step time (NaN before any step)."""
        return statistics.median(self.epoch_median_steps) if self.epoch_median_steps else math.nan

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = self._last_batch_end = time.perf_counter()
        self._steps = []

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        now = time.perf_counter()
        self._steps.append(now - self._last_batch_end)
        self._last_batch_end = now

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seconds += self._last_batch_end - self._epoch_start
        if self._steps:
            self.epoch_median_steps.append(statistics.median(self._steps[1:] or self._steps))
        self._steps = []


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


class DivergenceGuard(pl.Callback):
    """Stop a run whose training loss is no longer finite.

    The loss is checked every ``every_n_steps`` steps and at the end of each epoch (a NaN persists once
    the weights hold one), so on a GPU it costs one host sync per ``every_n_steps`` steps, not per step.
    """

    def __init__(self, every_n_steps: int = 25) -> None:
        self.every_n_steps = every_n_steps
        self._last_loss: Any = None

    def _check(self, loss: Any, trainer: pl.Trainer) -> None:
        if loss is not None and not bool(torch.isfinite(loss).all()):
            where = f"step {trainer.global_step}, epoch {trainer.current_epoch}"
            raise Diverged(f"training loss is {float(loss)} at {where}")

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, *args: Any) -> None:
        self._last_loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if trainer.global_step % self.every_n_steps == 0:
            self._check(self._last_loss, trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._check(self._last_loss, trainer)


class MemoryMonitor(pl.Callback):
    """A run's memory: in use at the end of each training epoch (MB, to show that nothing grows) and
    its peak.

    The peak is this run's, not the process's: on a GPU the CUDA allocator's peak, reset when training
    starts; on a CPU the largest resident set size sampled at the start, every ``every_n_steps`` steps
    and at each epoch's end (``ru_maxrss`` would be the process's lifetime peak, which in a sequential
    multirun includes every earlier run, and is kilobytes on Linux but bytes on macOS).
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        self.every_n_steps = every_n_steps
        self.per_epoch: list[float] = []
        self.sampled_peak_mb = 0.0

    def _sample(self, device: torch.device) -> float:
        from src.perf import current_memory_mb

        value = current_memory_mb(device)
        self.sampled_peak_mb = max(self.sampled_peak_mb, value)
        return value

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from src.perf import reset_peak_memory

        reset_peak_memory(pl_module.device)
        self._sample(pl_module.device)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        if trainer.global_step % self.every_n_steps == 0:
            self._sample(pl_module.device)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.per_epoch.append(round(self._sample(pl_module.device), 1))

    def peak_mb(self, device: torch.device) -> float:
        """The run's peak: the CUDA allocator's on a GPU, the sampled one on a CPU."""
        if device.type == "cuda":
            return max(torch.cuda.max_memory_allocated(device) / 2**20, self.sampled_peak_mb)
        return self.sampled_peak_mb


class OverfitCheck(pl.Callback):
    """``debug=overfit``: at the end of fitting, say whether the final train loss came close to zero
    (at most ``max_train_loss``): a model and data pipeline that cannot overfit a handful of images
    have a bug. A warning when it did not, never a failed run."""

    def __init__(self, max_train_loss: float = 0.05) -> None:
        self.max_train_loss = float(max_train_loss)
        self.passed: bool | None = None

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        import logging

        loss = trainer.callback_metrics.get("train/loss")
        value = float(loss) if loss is not None else math.nan
        self.passed = value <= self.max_train_loss
        if self.passed:
            logging.getLogger(__name__).info("overfit: train loss %.4f ≤ %g: it fits", value, self.max_train_loss)
        else:
            logging.getLogger(__name__).warning(
                "overfit: train loss %.4f > %g: the model did not fit a handful of images", value, self.max_train_loss
            )
