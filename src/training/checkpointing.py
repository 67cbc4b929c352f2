"""Checkpoints written atomically: a kill or a full disk never leaves a half-written ``last.ckpt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import Checkpoint

from src.run.atomic import atomic_file
from src.run.resume import CHECKPOINT_DIR, LAST_CHECKPOINT


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to a temporary file in the target directory, then renames it over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_file(path) as file:
            torch.save(checkpoint, file)


class LastCheckpoint(Checkpoint):
    """Rewrites ``last.ckpt`` at the end of every training epoch, through the trainer's CheckpointIO.

    What :class:`~pytorch_lightning.callbacks.ModelCheckpoint` with one ``last`` file does, without its
    per-step work: Lightning calls every hook of every callback each step, and ModelCheckpoint rebuilds
    its ``state_key`` string at each call and checks its step and time triggers after every batch. As a
    :class:`Checkpoint` it runs after the LightningModule's ``on_train_epoch_end``, like ModelCheckpoint.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    @property
    def state_key(self) -> str:
        return "LastCheckpoint"

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # every rank calls it; the strategy has rank 0 write. The full state (optimizer, loops) for resuming.
        trainer.save_checkpoint(self.path, weights_only=False)


def last_checkpoint_callback(run_dir: Path) -> LastCheckpoint:
    """Keep only ``<run_dir>/checkpoints/last.ckpt``, rewritten at the end of every training epoch."""
    return LastCheckpoint(Path(run_dir) / CHECKPOINT_DIR / LAST_CHECKPOINT)
