"""Lightning's progress bars, counting steps inside the fused loop's one training tick an epoch.

The fused loop (:mod:`src.training.epoch_loop`) is one Lightning ``training_step`` per epoch, so Lightning's
bars would show ``1/1`` an epoch. These subclasses take the loop's own count: it reports the steps done
(``on_fused_steps``, about twice a second) and the tick's end sets the bar to the epoch's steps. With the
per-step loop they are Lightning's bars unchanged.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

from src.training.epoch_loop import steps_per_batch


class StepTQDMBar(TQDMProgressBar):
    """:class:`TQDMProgressBar` whose training bar counts the fused loop's steps (speed and ETA in steps)."""

    def _show(self, done: int, total: int) -> None:
        bar = self.train_progress_bar
        if bar is not None and not bar.disable:
            bar.total, bar.n = total, done
            bar.refresh()

    def on_fused_steps(self, trainer: pl.Trainer, pl_module: pl.LightningModule, done: int, total: int) -> None:
        self._show(done, total)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        steps = steps_per_batch(pl_module)
        if steps == 1:
            super().on_train_batch_end(trainer, pl_module, *args)
            return
        if self.train_progress_bar is not None:
            self.train_progress_bar.set_postfix(self.get_metrics(trainer, pl_module), refresh=False)
        self._show(steps, steps)


class StepRichBar(RichProgressBar):
    """:class:`RichProgressBar` whose training bar counts the fused loop's steps."""

    def _show(self, done: int, total: int) -> None:
        if self.progress is not None and self.is_enabled and self.train_progress_bar_id is not None:
            self.progress.update(self.train_progress_bar_id, completed=done, total=total)
            self.refresh()

    def on_fused_steps(self, trainer: pl.Trainer, pl_module: pl.LightningModule, done: int, total: int) -> None:
        self._show(done, total)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        steps = steps_per_batch(pl_module)
        if steps > 1:
            self._show(steps, steps)
