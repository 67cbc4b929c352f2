"""Lightning callbacks of a run: training time, divergence, memory, the overfit check, kept weights,
which code trained which epochs, and progress.

Progress (``conf/callbacks/``): on a terminal Lightning's TQDM (``callbacks=default``) or Rich
(``callbacks=rich``) progress bar, with steps per second and the time left; when stdout is not a
terminal (a log file, CI, SLURM, a parallel launcher's worker) :class:`EpochLines` instead: one log line
per epoch, and a heartbeat line every ``heartbeat_minutes`` inside a long epoch. ``callbacks=none``
prints neither. A sweep's progress lines are :mod:`src.sweep.progress`'s.
"""

from __future__ import annotations

import logging
import math
import statistics
import sys
import time
from typing import Any

import pytorch_lightning as pl
import torch

from src.run.lifecycle import Diverged
from src.run.provenance import training_segment
from src.training.epoch_loop import steps_per_batch

log = logging.getLogger(__name__)
BARS = ("tqdm", "rich")


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
            steps = getattr(trainer.lightning_module, "steps_trained", None)
            where = f"step {steps() if callable(steps) else trainer.global_step}, epoch {trainer.current_epoch}"
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
        from src.training.perf import current_memory_mb

        value = current_memory_mb(device)
        self.sampled_peak_mb = max(self.sampled_peak_mb, value)
        return value

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        from src.training.perf import reset_peak_memory

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


WEIGHTS_FILE = "model.pt"
WEIGHT_CHOICES = ("none", "final", "best")


class KeepWeights(pl.Callback):
    """``save_weights=final|best``: keep the trained network's weights as ``<run dir>/model.pt`` (the
    network's ``state_dict`` and the epoch it is from), which ``python -m src.evaluate <run dir>``
    re-evaluates. ``final``: the weights at the end of training; ``best``: those of the epoch with the
    lowest validation error so far (rewritten whenever it falls). Only the main process writes."""

    def __init__(self, run_dir: Any, which: str = "final") -> None:
        if which not in WEIGHT_CHOICES[1:]:
            raise ValueError(f"save_weights={which}: allowed are {', '.join(WEIGHT_CHOICES)}")
        from pathlib import Path

        self.path = Path(run_dir) / WEIGHTS_FILE
        self.which = which
        self.epoch: int | None = None
        self.val_error: float | None = None

    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        self.epoch = epoch  # 0-based, as the record's curve counts epochs
        self.val_error = getattr(pl_module, "last_val_error", None)
        if not trainer.is_global_zero:
            return
        net = getattr(pl_module, "net", pl_module)
        state = {key: value.detach().cpu() for key, value in net.state_dict().items()}
        temporary = self.path.with_name(f".{self.path.name}.tmp")
        torch.save({"state_dict": state, "which": self.which, "epoch": self.epoch}, temporary)
        temporary.replace(self.path)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # runs after the epoch's validation (Lightning 2): best_val_error already includes this epoch
        if self.which == "best":
            error, best = getattr(pl_module, "last_val_error", math.nan), getattr(pl_module, "best_val_error", math.nan)
            if self.epoch is None or error <= best:
                self._save(trainer, pl_module, int(trainer.current_epoch))

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.which == "final":  # the epoch counter has moved past the last epoch by now
            self._save(trainer, pl_module, int(trainer.current_epoch) - 1)

    def description(self) -> dict[str, Any]:
        """What the run record says about the kept weights."""
        return {"file": self.path.name, "which": self.which, "epoch": self.epoch, "val_error": self.val_error}


class TrainedBy(pl.Callback):
    """Which code and machine trained which epochs. A run resumed from a checkpoint was trained in
    segments, each ``{from_epoch, git_commit, hostname}`` (:func:`src.run.provenance.training_segment`);
    the list travels in the checkpoint (Lightning's callback state), so a record names every commit that
    trained its run, not only the last one's. A checkpoint written before this existed gives a first
    segment whose commit and host are ``None``: unknown, and said so."""

    def __init__(self) -> None:
        self.earlier: list[dict[str, Any]] = []
        self.current: dict[str, Any] | None = None

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        start = int(trainer.current_epoch)  # the loops are restored by now (not yet at on_fit_start)
        if start > 0 and not self.earlier:
            self.earlier = [{"from_epoch": 0, "git_commit": None, "hostname": None}]
        self.current = training_segment(start)

    def segments(self) -> list[dict[str, Any]]:
        return [*self.earlier, *([self.current] if self.current else [])]

    def state_dict(self) -> dict[str, Any]:
        return {"segments": self.segments()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.earlier = list(state_dict.get("segments", []))


def fmt_seconds(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``."""
    if not math.isfinite(seconds):
        return "?"
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def is_terminal(stream: Any = None) -> bool:
    stream = stream if stream is not None else sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class EpochLines(pl.Callback):
    """Progress without a terminal: a log line at the end of each epoch (train loss, val error, steps
    per second, time per epoch, ETA of the run), and a heartbeat line every ``heartbeat_minutes`` within
    an epoch (step k of n, steps per second, ETA of the epoch)."""

    def __init__(self, heartbeat_minutes: float = 5.0) -> None:
        self.heartbeat_seconds = 60.0 * float(heartbeat_minutes)
        self._fit_start = self._epoch_start = self._last_beat = 0.0
        self._epoch_steps = 0

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._fit_start = time.perf_counter()
        self._first_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._epoch_start = self._last_beat = time.perf_counter()
        self._epoch_steps = 0

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._epoch_steps += steps_per_batch(pl_module)
        self._heartbeat(trainer, self._epoch_steps, trainer.num_training_batches)

    def on_fused_steps(self, trainer: pl.Trainer, pl_module: pl.LightningModule, done: int, total: int) -> None:
        """The fused loop's steps inside its one training tick an epoch (:mod:`src.training.epoch_loop`)."""
        self._heartbeat(trainer, done, total)

    def _heartbeat(self, trainer: pl.Trainer, done: int, total: Any) -> None:
        now = time.perf_counter()
        if self.heartbeat_seconds <= 0 or now - self._last_beat < self.heartbeat_seconds:
            return
        self._last_beat = now
        rate = done / max(now - self._epoch_start, 1e-9)
        if isinstance(total, int | float) and math.isfinite(total) and total > 0:
            where = f"step {done}/{int(total)} ({100 * done / total:.0f}%)"
            eta = f", epoch ETA {fmt_seconds((total - done) / rate)}"
        else:
            where, eta = f"step {done}", ""
        log.info("epoch %d/%d: %s, %.1f steps/s%s", trainer.current_epoch + 1, trainer.max_epochs, where, rate, eta)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # after the epoch's validation; the module logs its loss and error (src/training/module.py)
        now = time.perf_counter()
        epoch, epochs = trainer.current_epoch + 1, trainer.max_epochs
        per_epoch = (now - self._fit_start) / max(epoch - self._first_epoch, 1)
        seconds = max(now - self._epoch_start, 1e-9)
        log.info(
            "epoch %d/%d: %d steps, %.1f steps/s, %s; run ETA %s",
            epoch,
            epochs,
            self._epoch_steps,
            self._epoch_steps / seconds,
            fmt_seconds(seconds),
            fmt_seconds(per_epoch * max(epochs - epoch, 0)),
        )


def progress_callback(
    bar: str = "tqdm", heartbeat_minutes: float = 5.0, refresh_rate: int = 1, terminal: bool | None = None
) -> pl.Callback:
    """A progress bar (``bar``: ``tqdm`` or ``rich``) when stdout is a terminal, else :class:`EpochLines`.

    ``terminal`` forces one or the other (``None``: ask stdout)."""
    if bar not in BARS:
        raise ValueError(f"callbacks.progress.bar={bar}: allowed are {', '.join(BARS)}")
    if not (is_terminal() if terminal is None else terminal):
        return EpochLines(heartbeat_minutes)
    from src.training.progress_bars import StepRichBar, StepTQDMBar

    return (StepRichBar if bar == "rich" else StepTQDMBar)(refresh_rate=refresh_rate)
