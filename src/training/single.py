"""Train one configuration unpacked and write its run record: the run lifecycle
(:func:`src.run.lifecycle.run`) around this run's settings (:mod:`src.training.process`), building,
fitting and testing (:mod:`src.training.experiment`), and publishing the final record to its loggers
(W&B). ``python -m src.train`` calls it for every job; the packed launcher for runs it does not pack.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from src.run import lifecycle
from src.run.distributed import is_main_process
from src.run.records import RunRecord
from src.training.experiment import build_experiment, fit_and_test
from src.training.loggers import publish_record
from src.training.process import run_settings
from src.training.validation import validate_config

log = logging.getLogger(__name__)


def train(
    cfg: DictConfig,
    run_dir: Path,
    overrides: Sequence[str] = (),
    choices: dict[str, Any] | None = None,
    trainer_overrides: dict[str, Any] | None = None,
    launch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train and test one configuration; write and return its run record.

    A run directory whose record says completed for the same config hash is skipped; one that holds a
    completed record of another config is refused (:class:`src.run.resume.RunRefused`, nothing written
    but ``refused.txt``); ``force=true`` retrains either, keeping the old record as ``result.<hash>.json``.
    One left with a checkpoint by an interrupted job resumes from it (``resume=true``).
    Errors are recorded (``status: failed``) and re-raised; a non-finite loss ends the run with
    ``status: diverged``.
    """
    run_dir = Path(run_dir)
    loggers: list[Any] = []

    def fit(record: RunRecord, resume_from: Path | None) -> dict[str, Any]:
        validate_config(cfg)
        if cfg.get("ckpt_path"):  # the user's checkpoint comes before the run directory's own
            resume_from = Path(str(cfg.ckpt_path))
        with run_settings(cfg.seed, cfg.get("cpu_threads")):
            if resume_from is not None:
                log.info("resuming %s from %s", run_dir, resume_from)
            experiment = build_experiment(cfg, run_dir, loggers, trainer_overrides, record.identity(), resume_from)
            record.norm_info = experiment.norm.info()
            return fit_and_test(experiment, resume_from, compiled=bool(cfg.compile))

    spec = lifecycle.RunSpec(cfg, run_dir, list(overrides), choices, launch)
    # W&B: the record into the run's summary, then finish (never raises)
    return lifecycle.run(spec, fit, main=is_main_process(), written=lambda record: publish_record(loggers, record))
