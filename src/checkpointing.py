"""Checkpoints written atomically: a kill or a full disk never leaves a half-written ``last.ckpt``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO
from pytorch_lightning.callbacks import ModelCheckpoint

from src.atomic import atomic_file
from src.run_state import CHECKPOINT_DIR, LAST_CHECKPOINT


class AtomicCheckpointIO(TorchCheckpointIO):
    """Saves to a temporary file in the target directory, then renames it over the target."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any = None) -> None:
        with atomic_file(path) as file:
            torch.save(checkpoint, file)


def last_checkpoint_callback(run_dir: Path) -> ModelCheckpoint:
    """Keep only ``<run_dir>/checkpoints/last.ckpt``, rewritten at the end of every training epoch."""
    return ModelCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        # the one "top-k" checkpoint, named last.ckpt: Lightning 2.6 writes save_last's file at an epoch
        # end only when a top-k checkpoint was saved there, so save_top_k=0 would write it only at the end
        filename=LAST_CHECKPOINT.removesuffix(".ckpt"),
        save_top_k=1,
        every_n_epochs=1,
        save_on_train_epoch_end=True,
        enable_version_counter=False,
    )
