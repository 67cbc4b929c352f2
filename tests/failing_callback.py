"""A callback that fails a run inside its fit: a fault no check before training can see (for sweep tests)."""

from __future__ import annotations

import pytorch_lightning as pl


class FailAtTrainStart(pl.Callback):
    """Raises when training starts in the run whose ``seed`` is ``fail_seed``::

        +callbacks.boom._target_=tests.failing_callback.FailAtTrainStart '+callbacks.boom.seed=${seed}'
        +callbacks.boom.fail_seed=1 seed=0,1

    (callbacks stay out of a run's directory name and hash, so the seed, which is in both, picks the run)."""

    def __init__(self, seed: int, fail_seed: int) -> None:
        self.fail = seed == fail_seed

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.fail:
            raise RuntimeError("boom: this run was made to fail (tests/failing_callback.py)")
