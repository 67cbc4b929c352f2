"""Train one configuration and write its run record: ``python -m src.train [overrides]``.

Everything is built from the config with ``hydra.utils.instantiate``: the dataset (a LightningDataModule)
first, because the model takes its input shape and class count from it; then the norm factory, the
model, the LightningModule and the Trainer. The run ends by writing ``result.json`` in the run directory.
"""

from __future__ import annotations

import logging
import math
import shutil
import time
import traceback
import warnings
from collections.abc import Sequence
from contextlib import nullcontext, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hydra
import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from hydra.errors import InstantiationException
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig, OmegaConf

from src.atomic import write_text_atomic
from src.callbacks import Diverged, DivergenceGuard, MemoryMonitor, TrainTimer
from src.checkpointing import AtomicCheckpointIO, last_checkpoint_callback
from src.config_keys import config_hash, register_resolvers
from src.loggers import publish_record
from src.module import Classifier
from src.norms import describe_norm_layers, norm_state, standardize_convolutions
from src.perf import gpu_for_job, warn_device_mismatch
from src.records import git_commit, machine_description, package_versions, write_record
from src.run_state import (
    CHECKPOINT_DIR,
    REFUSAL_FILE,
    RunRefused,
    archive_record,
    distributed_job,
    is_main_process,
    previous_run,
    redact,
    refusal,
    run_lock,
)
from src.validation import probe_forward, validate_config

log = logging.getLogger(__name__)
register_resolvers()  # before Hydra composes: the sweep's run directory names use ${run_dirname:…}


def quiet_lightning() -> None:
    """Drop Lightning's advice that does not apply here (in-memory data needs no workers, ads)."""
    ignored = (".*does not have many workers.*", ".*exists and is not empty.*", ".*treespec.*", ".*logging interval.*")
    for message in ignored:
        warnings.filterwarnings("ignore", message=message)
    logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(lambda entry: "Tip:" not in entry.getMessage())


def build(config: Any, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, re-raising the constructor's own error: its message names the
    config key, the bad value and what is allowed, which Hydra's wrapper would bury."""
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, Exception):
            raise error.__cause__ from None
        raise


def resumed_epoch(checkpoint: Path | None) -> int | None:
    """The number of epochs a resumed run had completed before it was interrupted."""
    if checkpoint is None:
        return None
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]) + 1


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def device_name(trainer: pl.Trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"
    return str(device)


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
        previous = previous_run(run_dir)
        if previous.completed_with(digest) and not force:
            log.info("skipping %s: completed earlier with the same config (force=true retrains)", run_dir)
            return {**previous.record, "skipped": True}
        if previous.completed and not force:
            message = refusal(run_dir, previous.record.get("config") or {}, config)
            if main:
                write_text_atomic(run_dir / REFUSAL_FILE, message + "\n")
            raise RunRefused(message)
        if main:
            (run_dir / REFUSAL_FILE).unlink(missing_ok=True)
            if previous.completed:
                kept = archive_record(run_dir, previous.digest)
                log.info("force=true: the earlier record of %s is kept as %s", run_dir, kept.name)
        resume_from = None
        if previous.checkpoint is not None:
            same_config = previous.digest == digest
            if same_config and cfg.get("resume", True) and not force:
                resume_from = previous.checkpoint
            elif main:
                previous.checkpoint.unlink()
        record: dict[str, Any] = {
            "status": "running",
            **run_identity(cfg, overrides, choices),
            "run_dir": str(run_dir),
            "config_hash": digest,
            "config": config,
            "launch": launch,
            "started_at": now(),
        }
        if main:
            write_record(run_dir, record)
        loggers: list[Any] = []
        try:
            validate_config(cfg)
            record.update(fit_and_test(cfg, run_dir, resume_from, loggers, trainer_overrides))
            record["status"] = "completed"
            if main:
                shutil.rmtree(run_dir / CHECKPOINT_DIR, ignore_errors=True)  # only interrupted runs need one
        except Diverged as error:
            record.update(status="diverged", error=str(error))
            log.warning("%s diverged: %s", run_dir, error)
        except Exception as error:
            record.update(status="failed", error=f"{type(error).__name__}: {error}", traceback=traceback.format_exc())
            raise
        finally:
            record["finished_at"] = now()
            record.setdefault("environment", {}).update(git_commit=commit, machine=machine_description())
            if main:
                write_record(run_dir, record)
                publish_record(loggers, record)  # W&B: the record into the run's summary, then finish (never raises)
    return record


def batch_sizes(batch: int, world_size: int, norm: Any) -> dict[str, Any]:
    """The three batch sizes of a run: per device (``batch``), global (all devices; the learning rate
    scales with it), and the one the normalization statistics are computed over."""
    if not norm.batch_dependent:
        statistics = 1  # per-sample statistics (GN, LN, IN, …) or none at all
    elif getattr(norm, "synchronized", False):
        statistics = batch * world_size
    else:
        statistics = batch
    return {
        "per_device": batch,
        "world_size": world_size,
        "global_batch": batch * world_size,
        "norm_statistics": statistics,
    }


def fit_and_test(
    cfg: DictConfig,
    run_dir: Path,
    resume_from: Path | None,
    loggers: list[Any],
    trainer_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build everything from the config, fit (resuming from ``resume_from`` if given) and test.

    The loggers it creates are appended to ``loggers`` so the caller can hand them the final record.
    ``trainer_overrides`` are Trainer arguments that do not belong in the config (e.g. the GPU a
    parallel job was given).
    """
    quiet_lightning()
    torch.set_flush_denormal(True)  # on CPUs, denormal floats late in training can slow steps 10×
    if cfg.cpu_threads:
        torch.set_num_threads(cfg.cpu_threads)
    pl.seed_everything(cfg.seed, workers=True, verbose=False)
    datamodule: pl.LightningDataModule = build(cfg.dataset)
    datamodule.setup("fit")
    norm = build(cfg.norm)
    norm.validate(batch=cfg.batch)
    net = build(cfg.model, input_shape=datamodule.input_shape, num_classes=datamodule.num_classes, norm=norm)
    norm.apply_weight(net)
    if cfg.get("standardize_weights", False):
        standardize_convolutions(net)
    probe_forward(net, cfg.batch, datamodule.input_shape, norm.name)
    norm_layers = describe_norm_layers(net)
    log.info("model %s with norm %s: %s", type(net).__name__, norm.name, norm_layers or "no norm layers")

    timer = TrainTimer()
    loggers.extend(build(logger_cfg, save_dir=str(run_dir)) for logger_cfg in cfg.logger.values())
    memory = MemoryMonitor()
    callbacks = [timer, memory, DivergenceGuard(), last_checkpoint_callback(run_dir)]
    trainer: pl.Trainer = build(
        cfg.trainer,
        **(trainer_overrides or {}),
        logger=loggers or False,
        callbacks=callbacks,
        enable_checkpointing=True,  # with LastCheckpoint as the checkpoint callback (Lightning adds no other)
        # On SLURM, requeue is submitit's (conf/hydra/launcher/slurm.yaml): Lightning's own auto-requeue is off.
        plugins=[AtomicCheckpointIO(), *([SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else [])],
        default_root_dir=str(run_dir),
    )
    warn_device_mismatch(trainer.strategy.root_device, cfg.trainer.get("accelerator"))
    batches = batch_sizes(cfg.batch, trainer.world_size, norm)
    optim = OmegaConf.to_container(cfg.optim, resolve=True)
    module = Classifier(
        net=net,
        optimizer=build(cfg.optim.optimizer),
        num_classes=datamodule.num_classes,
        batch=batches["global_batch"],  # the learning rate follows the global batch
        compile_mode=cfg.compile_mode if cfg.compile else None,
        **{key: value for key, value in optim.items() if key != "optimizer"},
    )
    if resume_from is not None:
        log.info("resuming %s from %s", run_dir, resume_from)
    resumed_from_epoch = resumed_epoch(resume_from)  # before fit: training rewrites last.ckpt every epoch
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    fit_seconds = time.perf_counter() - started
    train_loss = trainer.callback_metrics.get("train/loss")
    test_metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]

    steps = int(trainer.global_step)
    return {
        "lr": module.lr,
        "batches": batches,
        "metrics": {
            "val_error": module.last_val_error,
            "best_val_error": module.best_val_error if math.isfinite(module.best_val_error) else math.nan,
            "test_error": float(test_metrics["test/error"]),
            "train_loss": float(train_loss) if train_loss is not None else math.nan,
        },
        "timing": {
            "fit_seconds": round(fit_seconds, 3),
            "train_seconds": round(timer.seconds, 3),
            "train_steps": steps,
            "steps_per_second": round(steps / timer.seconds, 3) if timer.seconds > 0 else math.nan,
            "median_step_ms": round(1e3 * timer.median_step_seconds, 3),
            "epochs_completed": int(trainer.current_epoch),
            "resumed_from_epoch": resumed_from_epoch,
            "compiled": bool(cfg.compile),
        },
        "memory": {
            "peak_mb": round(memory.peak_mb(module.device), 1),
            "per_epoch_mb": memory.per_epoch,
        },
        "data": {
            "splits": datamodule.split_sizes(),
            "input_shape": list(datamodule.input_shape),
            "num_classes": datamodule.num_classes,
        },
        "norm_layers": norm_layers,
        "norm_state": norm_state(net),
        "num_parameters": sum(p.numel() for p in net.parameters()),
        "environment": {
            "torch": torch.__version__,
            "lightning": pl.__version__,
            "cpu_threads": torch.get_num_threads(),
            "packages": package_versions(),
            "device": device_name(trainer),
        },
    }


def log_traceback_to_file(text: str) -> None:
    """Append a traceback to the run's log file only (the console gets the one-line error)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
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
        log_traceback_to_file(redact(traceback.format_exc()))
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
