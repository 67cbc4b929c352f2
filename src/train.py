"""Train one configuration and write its run record: ``python -m src.train [overrides]``.

The entry point only orchestrates: the resume decision (:mod:`src.run.resume`: skip, refuse or train,
under the run directory's lock), the run's process-wide settings (:mod:`src.training.process`), building,
fitting and testing (:mod:`src.training.experiment`), and the run record (:class:`src.run.records.RunRecord`),
written to ``result.json`` when the run starts and when it ends, then published to W&B.
"""

from __future__ import annotations

import logging
import math
import shutil
import traceback
from collections.abc import Sequence
from contextlib import nullcontext, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from src.run.atomic import write_text_atomic
from src.run.config_keys import config_hash, register_resolvers
from src.run.distributed import distributed_job, is_main_process
from src.run.provenance import git_commit, machine_description, redact
from src.run.records import RunRecord, write_record
from src.run.resume import CHECKPOINT_DIR, REFUSAL_FILE, Action, RunRefused, archive_record, decide, run_lock
from src.studies import register_resolver as register_studies_resolver
from src.training.callbacks import Diverged
from src.training.experiment import build_experiment, fit_and_test
from src.training.loggers import publish_record
from src.training.perf import gpu_for_job
from src.training.process import run_settings
from src.training.validation import validate_config

log = logging.getLogger(__name__)
register_resolvers()  # before Hydra composes: the sweep's run directory names use ${run_dirname:…}
register_studies_resolver()  # --help lists the studies: ${studies:}


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def run_identity(cfg: DictConfig, overrides: Sequence[str], choices: dict[str, Any] | None) -> dict[str, Any]:
    """The fields that identify a run in reports."""
    choices = choices or {}
    return {
        "study": cfg.study,
        "overrides": list(overrides),
        "norm": choices.get("norm", cfg.norm.name),
        "batch": cfg.batch,
        "dataset": choices.get("dataset", cfg.dataset.name),
        "model": choices.get("model", str(cfg.model._target_).rsplit(".", 1)[-1]),
        "seed": cfg.seed,
        "epochs": cfg.epochs,
    }


def launch_description(hydra_cfg: Any) -> dict[str, Any]:
    """How the run was launched, for reports to rebuild the sweep's command line: the primary config
    (name, and ``--config-dir`` when one was given, relative to the working directory where possible),
    the Hydra overrides (launcher, sweep dir, …) and whether it was a multirun."""
    config_dir = next(
        (source.path for source in hydra_cfg.runtime.config_sources if source.provider == "command-line"), None
    )
    if config_dir:
        with suppress(ValueError):
            config_dir = str(Path(config_dir).resolve().relative_to(Path(hydra_cfg.runtime.cwd).resolve()))
    return {
        "config_name": hydra_cfg.job.config_name,
        "config_dir": config_dir,
        "hydra_overrides": [o for o in hydra_cfg.overrides.hydra if not o.startswith("hydra.mode=")],
        "multirun": hydra_cfg.mode == RunMode.MULTIRUN,
    }


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
    completed record of another config is refused (:class:`RunRefused`, nothing written but
    ``refused.txt``); ``force=true`` retrains either, keeping the old record as ``result.<hash>.json``.
    One left with a checkpoint by an interrupted job resumes from it (``resume=true``).
    Errors are recorded (``status: failed``) and re-raised; a non-finite loss ends the run with
    ``status: diverged``.
    """
    run_dir = Path(run_dir)
    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        raise ValueError(f"{', '.join(missing)}: required and not given (give {missing[0]}=<value>)")
    config = OmegaConf.to_container(cfg, resolve=True)
    digest = config_hash(config)
    force = bool(cfg.get("force", False))
    # Under DDP every rank runs this: only rank 0 locks and writes; the others decide skip/resume from
    # what rank 0 left (it deletes a stale checkpoint before it rewrites the record) and write nothing.
    main = is_main_process()
    commit = git_commit()  # the code this run starts with (the tree may change while it trains)
    with run_lock(run_dir) if main else nullcontext():
        decision = decide(run_dir, config, digest, force=force, resume=bool(cfg.get("resume", True)))
        previous = decision.previous
        if decision.action is Action.SKIP:
            log.info("skipping %s: completed earlier with the same config (force=true retrains)", run_dir)
            return {**previous.record, "skipped": True}
        if decision.action is Action.REFUSE:
            if main:
                write_text_atomic(run_dir / REFUSAL_FILE, decision.message + "\n")
            raise RunRefused(decision.message)
        if main:
            (run_dir / REFUSAL_FILE).unlink(missing_ok=True)
            if previous.completed:
                kept = archive_record(run_dir, previous.digest)
                log.info("force=true: the earlier record of %s is kept as %s", run_dir, kept.name)
            if previous.checkpoint is not None and decision.resume_from is None:
                previous.checkpoint.unlink()
        record = RunRecord(
            **run_identity(cfg, overrides, choices),
            run_dir=str(run_dir),
            config_hash=digest,
            config=config,
            launch=launch,
            started_at=now(),
        )
        if main:
            write_record(run_dir, record)
        loggers: list[Any] = []
        try:
            validate_config(cfg)
            with run_settings(cfg.seed, cfg.get("cpu_threads")):
                if decision.resume_from is not None:
                    log.info("resuming %s from %s", run_dir, decision.resume_from)
                experiment = build_experiment(cfg, run_dir, loggers, trainer_overrides, record.identity())
                record.norm_info = experiment.norm.info()
                produced = fit_and_test(experiment, decision.resume_from, compiled=bool(cfg.compile))
            for key, value in produced.items():
                setattr(record, key, value)
            record.status = "completed"
            if main:
                shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)  # only interrupted runs need one
        except Diverged as error:
            record.status, record.error = "diverged", str(error)
            log.warning("%s diverged: %s", run_dir, error)
        except Exception as error:
            record.status, record.error = "failed", f"{type(error).__name__}: {error}"
            record.traceback = traceback.format_exc()
            raise
        finally:
            record.finished_at = now()
            record.environment.update(git_commit=commit, machine=machine_description())
            if main:
                write_record(run_dir, record)
                publish_record(loggers, record)  # W&B: the record into the run's summary, then finish (never raises)
    return record.to_dict()


def log_traceback_to_file(text: str, run_dir: Path) -> None:
    """Append a traceback to the log files inside ``run_dir`` only (the console gets the one-line error,
    and the log files of other runs in this process get nothing)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().is_relative_to(
            run_dir.resolve()
        ):
            handler.emit(logging.LogRecord(__name__, logging.ERROR, __file__, 0, text, None, None))


@hydra.main(version_base="1.3", config_path="../conf", config_name="train")
def main(cfg: DictConfig) -> float:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    try:
        with distributed_job(hydra_cfg):  # DDP ranks Lightning starts re-run this job, in this directory
            gpu = gpu_for_job(hydra_cfg.job.get("num", 0) or 0, cfg.trainer.get("devices"))
            record = train(
                cfg,
                run_dir,
                overrides=list(hydra_cfg.overrides.task),
                choices=dict(hydra_cfg.runtime.choices),
                trainer_overrides={"devices": gpu} if gpu else None,
                launch=launch_description(hydra_cfg),
            )
    except RunRefused as error:
        log.error("%s", error)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return math.nan  # the sweep goes on; SweepSummary lists the refused runs at its end
        raise SystemExit(1) from None
    except Exception as error:
        log.error("%s failed: %s", run_dir, redact(f"{type(error).__name__}: {error}"))
        log_traceback_to_file(redact(traceback.format_exc()), run_dir)
        if hydra_cfg.mode == RunMode.MULTIRUN:
            return math.nan  # the sweep goes on; SweepSummary lists the failure at its end
        raise SystemExit(1) from None
    if record["status"] != "completed":
        if hydra_cfg.mode != RunMode.MULTIRUN:
            raise SystemExit(1)
        return math.nan
    metrics = record["metrics"]
    log.info("%s: test error %.2f%%, best val error %.2f%%", run_dir, metrics["test_error"], metrics["best_val_error"])
    return metrics["test_error"]


if __name__ == "__main__":
    main()
