"""Build one run from its config, fit it and test it: what a single run (:mod:`src.training.single`) runs
inside the run lifecycle.

Everything is built with ``hydra.utils.instantiate``: the dataset (a LightningDataModule) first, because
the model takes its input shape and class count from it; then the norm, the model, the loggers, the
Trainer and the LightningModule. :func:`fit_and_test` returns the record fields the run produced.
"""

from __future__ import annotations

import inspect
import logging
import math
import time
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
from hydra.errors import InstantiationException
from hydra.utils import get_class, get_object, instantiate
from lightning_fabric.plugins.environments import SLURMEnvironment
from omegaconf import DictConfig
from pytorch_lightning.callbacks import ProgressBar
from torch import nn

from src.norms import Normalization, describe_norm_layers, norm_state, standardize_convolutions
from src.norms.checks import unknown_argument
from src.run.provenance import package_versions
from src.training.callbacks import DivergenceGuard, KeepWeights, MemoryMonitor, TrainedBy, TrainTimer
from src.training.checkpointing import AtomicCheckpointIO, last_checkpoint_callback
from src.training.fused_step import checkpoint_loop, mode_for
from src.training.module import Classifier
from src.training.perf import warn_device_mismatch
from src.training.validation import probe_forward

log = logging.getLogger(__name__)
LR_KEYS = ("base_lr", "base_batch", "scale_lr", "warmup_epochs")


def build(config: Any, key: str | None = None, **kwargs: Any) -> Any:
    """``hydra.utils.instantiate``, re-raising the constructor's own error: its message names the
    config key, the bad value and what is allowed, which Hydra's wrapper would bury. With ``key`` (the
    config node's name), a sub-key the constructor does not take (``+model.foo=2``) fails first, as one
    line naming it and the keys there are (:func:`src.norms.checks.unknown_argument`)."""
    if key is not None and "_target_" in config:
        arguments = {k: v for k, v in config.items() if not str(k).startswith("_")}
        error = unknown_argument(key, get_object(str(config["_target_"])), arguments, supplied=kwargs)
        if error is not None:
            raise error
    try:
        return instantiate(config, **kwargs)
    except InstantiationException as error:
        if isinstance(error.__cause__, Exception):
            raise error.__cause__ from None
        raise


def batch_sizes(batch: int, world_size: int, norm: Normalization) -> dict[str, Any]:
    """The batch sizes of a run: per device (``batch``), global (``batch × world_size``: the images one
    optimizer step sees; the learning rate scales with it), and the one the normalization statistics
    are computed over (1 for a per-sample norm, the global batch for a synchronized one)."""
    if not norm.batch_dependent:
        statistics = 1  # per-sample statistics (GN, LN, IN, …) or none at all
    elif norm.synchronized:
        statistics = batch * world_size
    else:
        statistics = batch
    return {
        "per_device": batch,
        "world_size": world_size,
        "global_batch": batch * world_size,
        "norm_statistics": statistics,
    }


def lr_arguments(optim: DictConfig) -> dict[str, Any]:
    """The learning-rate rule of ``optim`` (:class:`src.training.module.Classifier`'s keywords) with its optimizer
    and schedule built from their ``_partial_`` configs; an unknown key fails with one line naming it."""
    unknown = sorted(set(optim) - {"optimizer", "schedule", *LR_KEYS})
    if unknown:
        allowed = ", ".join(["optimizer", "schedule", *LR_KEYS])
        raise ValueError(f"optim.{unknown[0]} is not a known key: allowed are {allowed}")
    return {
        "optimizer": build(optim.optimizer),
        "schedule": build(optim.schedule),
        **{key: optim[key] for key in LR_KEYS if key in optim},
    }


def resumed_epoch(checkpoint: Path | None) -> int | None:
    """The number of epochs a resumed run had completed before it was interrupted."""
    if checkpoint is None:
        return None
    return int(torch.load(checkpoint, map_location="cpu", weights_only=False)["epoch"]) + 1


def device_name(trainer: pl.Trainer) -> str:
    device = trainer.strategy.root_device
    if device.type == "cuda":
        return f"cuda:{device.index} ({torch.cuda.get_device_name(device)})"
    return str(device)


@dataclass
class Experiment:
    """Everything one run is made of, built and not yet fitted."""

    datamodule: pl.LightningDataModule
    norm: Normalization
    net: nn.Module
    module: Classifier
    trainer: pl.Trainer
    batches: dict[str, Any]
    loggers: list[Any] = field(default_factory=list)
    timer: TrainTimer = field(default_factory=TrainTimer)
    memory: MemoryMonitor = field(default_factory=MemoryMonitor)


def build_logger(config: DictConfig, run_dir: Path, identity: dict[str, Any]) -> Any:
    """A logger from its config, writing into ``run_dir``; one whose class takes ``identity`` (W&B)
    gets the run record's identity."""
    kwargs: dict[str, Any] = {"save_dir": str(run_dir)}
    with suppress(Exception):
        if "identity" in inspect.signature(get_class(config._target_)).parameters:
            kwargs["identity"] = identity
    return build(config, **kwargs)


def build_model(cfg: DictConfig) -> tuple[pl.LightningDataModule, Normalization, nn.Module]:
    """The run's data (set up), norm and initialised network, in the order that fixes what the seeded
    global RNG gives each: the model's initialisation draws follow the dataset's set-up. Packed runs
    (:mod:`src.sweep.pack`) build each member with this, so a member starts exactly as its unpacked run."""
    datamodule = build_data(cfg)
    norm, net = build_network(cfg, datamodule)
    return datamodule, norm, net


def build_data(cfg: DictConfig) -> pl.LightningDataModule:
    """The run's datamodule, set up for fitting (its splits drawn, the batch checked against them)."""
    datamodule: pl.LightningDataModule = build(cfg.dataset, key="dataset")
    datamodule.setup("fit")
    return datamodule


def build_network(cfg: DictConfig, datamodule: pl.LightningDataModule) -> tuple[Normalization, nn.Module]:
    """The run's norm and initialised network for ``datamodule``'s input shape and classes (the norm's
    weight reparametrization and weight standardization applied), checked by one training-mode forward
    pass at the run's batch."""
    norm: Normalization = build(cfg.norm, key="norm")
    norm.validate(batch=cfg.batch)
    shape, classes = datamodule.input_shape, datamodule.num_classes
    net = build(cfg.model, key="model", input_shape=shape, num_classes=classes, norm=norm)
    norm.apply_weight(net)
    if cfg.get("standardize_weights", False):
        standardize_convolutions(net)
    probe_forward(net, cfg.batch, datamodule.input_shape, norm.name)
    return norm, net


def fused_mode(
    cfg: DictConfig,
    device: torch.device,
    net: torch.nn.Module,
    world_size: int = 1,
    resume_from: Path | None = None,
    section: str = "normlab",
) -> str | None:
    """The training loop a run (or a pack, ``net`` its template) takes from its config: ``fused_step`` on
    ``device`` given its trainer keys, optimizer, ``compile`` and the checkpoint it will resume (whose loop
    ``auto`` keeps; ``section``: ``normlab`` for a run, ``normlab_pack`` for a pack). See
    :func:`src.training.fused_step.mode_for`; None: the per-step loop."""
    return mode_for(
        cfg.get("fused_step", "off"),
        device,
        net,
        world_size,
        trainer=cfg.trainer,
        optimizer=build(cfg.optim.optimizer),
        saved_fused=checkpoint_loop(resume_from, section),
        compile=bool(cfg.get("compile", False)),
    )


def build_experiment(
    cfg: DictConfig,
    run_dir: Path,
    loggers: list[Any],
    trainer_overrides: dict[str, Any] | None = None,
    identity: dict[str, Any] | None = None,
    resume_from: Path | None = None,
) -> Experiment:
    """Build the run's data, norm, model, Trainer and LightningModule from ``cfg`` (``resume_from``: the
    checkpoint the run will resume, whose loop ``fused_step=auto`` keeps).

    The loggers are appended to ``loggers`` as soon as they exist, so the caller can hand them the
    final record even when a later step fails. ``trainer_overrides`` are Trainer arguments that do not
    belong in the config (e.g. the GPU a parallel job was given); ``identity`` is the run record's.
    """
    datamodule, norm, net = build_model(cfg)
    timer, memory = TrainTimer(), MemoryMonitor()
    # conf/callbacks/ (steering): the progress bar, or a line per epoch without a terminal
    extra = [build(callback) for callback in (cfg.get("callbacks") or {}).values() if callback is not None]
    if str(cfg.get("save_weights") or "none") != "none":  # keep the trained model (src/evaluate.py reads it)
        extra.append(KeepWeights(run_dir, str(cfg.save_weights)))
    loggers.extend(build_logger(logger_cfg, run_dir, identity or {}) for logger_cfg in cfg.logger.values())
    trainer: pl.Trainer = build(
        cfg.trainer,
        **(trainer_overrides or {}),
        logger=loggers or False,
        callbacks=[timer, memory, DivergenceGuard(), TrainedBy(), last_checkpoint_callback(run_dir), *extra],
        enable_progress_bar=any(isinstance(callback, ProgressBar) for callback in extra),
        enable_checkpointing=True,  # with LastCheckpoint as the checkpoint callback (Lightning adds no other)
        # On SLURM, requeue is submitit's (conf/hydra/launcher/slurm.yaml): Lightning's own auto-requeue is off.
        plugins=[AtomicCheckpointIO(), *([SLURMEnvironment(auto_requeue=False)] if SLURMEnvironment.detect() else [])],
        default_root_dir=str(run_dir),
    )
    warn_device_mismatch(trainer.strategy.root_device, cfg.trainer.get("accelerator"))
    batches = batch_sizes(cfg.batch, trainer.world_size, norm)
    fused = fused_mode(cfg, trainer.strategy.root_device, net, trainer.world_size, resume_from)
    datamodule.fused_loop = fused is not None  # one training tick per epoch (src/training/epoch_loop.py)
    module = Classifier(
        net=net,
        num_classes=datamodule.num_classes,
        global_batch=batches["global_batch"],
        compile_mode=cfg.compile_mode if cfg.compile and fused is None else None,
        fused=fused,
        **lr_arguments(cfg.optim),
    )
    return Experiment(datamodule, norm, net, module, trainer, batches, loggers, timer, memory)


def fit_and_test(experiment: Experiment, resume_from: Path | None, compiled: bool) -> dict[str, Any]:
    """Fit (resuming from ``resume_from`` if given), test, and return the record fields of the run."""
    trainer, module, datamodule, net = experiment.trainer, experiment.module, experiment.datamodule, experiment.net
    norm_layers = describe_norm_layers(net)
    log.info("model %s with norm %s: %s", type(net).__name__, experiment.norm.name, norm_layers or "no norm layers")
    resumed_from_epoch = resumed_epoch(resume_from)  # before fit: training rewrites last.ckpt every epoch
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    fit_seconds = time.perf_counter() - started
    train_loss = trainer.callback_metrics.get("train/loss")
    test_metrics = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    kept = [callback.description() for callback in trainer.callbacks if isinstance(callback, KeepWeights)]
    fields = result_fields(
        trainer=trainer,
        net=net,
        datamodule=datamodule,
        batches=experiment.batches,
        lr=module.lr,
        metrics={
            "val_error": module.last_val_error,
            "best_val_error": module.best_val_error if math.isfinite(module.best_val_error) else math.nan,
            "test_error": float(test_metrics["test/error"]),
            "train_loss": float(train_loss) if train_loss is not None else math.nan,
        },
        curve=list(module.curve),
        timer=experiment.timer,
        memory=experiment.memory,
        device=module.device,
        fit_seconds=fit_seconds,
        resumed_from_epoch=resumed_from_epoch,
        compiled=compiled or module.fused in ("compile", "graph"),
        norm_layers=norm_layers,
        train_steps=module.steps_trained() if module.fused else None,
        fused_step=module.fused,
    )
    return {**({"weights": kept[0]} if kept else {}), **fields}


def result_fields(
    *,
    trainer: pl.Trainer,
    net: nn.Module,
    datamodule: Any,
    batches: dict[str, Any],
    lr: float,
    metrics: dict[str, float],
    curve: list[dict[str, float]],
    timer: TrainTimer,
    memory: MemoryMonitor,
    device: torch.device,
    fit_seconds: float,
    resumed_from_epoch: int | None,
    compiled: bool,
    norm_layers: dict[str, int],
    train_steps: int | None = None,
    fused_step: str | None = None,
) -> dict[str, Any]:
    """The record fields a fitted and tested run produced (shared by unpacked and packed runs, so both
    write records of one schema). ``train_steps``: the optimizer steps when Lightning does not count them
    (the fused loop, :mod:`src.training.epoch_loop`, whose one Lightning step is an epoch); ``fused_step``:
    its mode. A resumed run's ``timing.trained_by`` lists the commit and host of each segment of its
    training (:class:`~src.training.callbacks.TrainedBy`)."""
    steps = int(trainer.global_step) if train_steps is None else int(train_steps)
    segments = next((c.segments() for c in trainer.callbacks if isinstance(c, TrainedBy)), [])
    per_tick = steps / max(1, int(trainer.current_epoch)) if fused_step and train_steps else 1.0
    return {
        "lr": lr,
        "batches": batches,
        "metrics": metrics,
        "curve": curve,
        "timing": {
            "fit_seconds": round(fit_seconds, 3),
            "train_seconds": round(timer.seconds, 3),
            "train_steps": steps,
            "steps_per_second": round(steps / timer.seconds, 3) if timer.seconds > 0 else math.nan,
            "median_step_ms": round(1e3 * timer.median_step_seconds / max(per_tick, 1.0), 3),
            "epochs_completed": int(trainer.current_epoch),
            "resumed_from_epoch": resumed_from_epoch,
            **({"trained_by": segments} if resumed_from_epoch else {}),
            "compiled": compiled,
            **({"fused_step": fused_step} if fused_step else {}),
        },
        "memory": {
            "peak_mb": round(memory.peak_mb(device), 1),
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
