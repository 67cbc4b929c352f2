"""Process-wide settings a run needs, set in one place and restored when the run ends, so that runs
sharing one process (a sequential multirun, packed runs, tests) do not leak settings into each other.

:func:`run_settings` sets, for the duration of one run: the global seeds (Python, NumPy, torch, via
Lightning's ``seed_everything``) with the previous RNG states restored afterwards; torch's intra-op
thread count (``cpu_threads``); flushing denormal floats to zero on CPUs (late in training, denormals
can slow a step 10×); and the warning and log filters that drop Lightning advice which does not apply
to in-memory data. The environment variables are restored too: Lightning's seed variables
(``PL_GLOBAL_SEED``) and whatever a library sets on first use.
"""

from __future__ import annotations

import logging
import os
import random
import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytorch_lightning as pl
import torch

IGNORED_WARNINGS = (
    ".*does not have many workers.*",
    ".*exists and is not empty.*",
    ".*treespec.*",
    ".*logging interval.*",
)
RANK_ZERO_LOGGER = "pytorch_lightning.utilities.rank_zero"


def _no_tips(entry: logging.LogRecord) -> bool:
    """Lightning's advertising ``Tip:`` lines are dropped."""
    return "Tip:" not in entry.getMessage()


@contextmanager
def run_settings(seed: int, cpu_threads: int | None = None) -> Iterator[None]:
    """Seed everything with ``seed`` and apply the run's process-wide settings; restore them on exit."""
    saved_threads = torch.get_num_threads()
    saved_rng = (random.getstate(), np.random.get_state(), torch.get_rng_state())
    saved_cuda_rng = torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None
    saved_env = dict(os.environ)  # Lightning's seed variables, and what libraries set on first use
    rank_zero = logging.getLogger(RANK_ZERO_LOGGER)
    with warnings.catch_warnings():
        for message in IGNORED_WARNINGS:
            warnings.filterwarnings("ignore", message=message)
        rank_zero.addFilter(_no_tips)
        torch.set_flush_denormal(True)
        if cpu_threads:
            torch.set_num_threads(int(cpu_threads))
        pl.seed_everything(seed, workers=True, verbose=False)
        try:
            yield
        finally:
            rank_zero.removeFilter(_no_tips)
            torch.set_flush_denormal(False)
            torch.set_num_threads(saved_threads)
            random.setstate(saved_rng[0])
            np.random.set_state(saved_rng[1])
            torch.set_rng_state(saved_rng[2])
            if saved_cuda_rng is not None:
                torch.cuda.set_rng_state_all(saved_cuda_rng)
            for key in set(os.environ) - set(saved_env):
                del os.environ[key]
            os.environ.update(saved_env)
