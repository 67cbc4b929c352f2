"""Weights & Biases for normlab runs: a WandbLogger that never stops training, and the run record as
the W&B run's summary.

``logger=wandb`` (``conf/logger/wandb.yaml``) adds :class:`WandbLogger` next to the CSV logger. One W&B
run per training run (per job of a multirun): grouped by study, named by the overrides, tagged with
norm, batch, dataset and model. When the run record is written, :func:`publish_record` copies the
record's metrics and identity into the W&B run's summary and the resolved config into its config, so
a W&B panel can plot ``summary.test_error`` against ``config.identity.batch`` grouped by
``config.identity.norm``, then finishes the run.

Offline unless asked otherwise (:func:`src.run.wandb_mode.resolve_mode`: ``WANDB_MODE`` when set, else
``online`` when an API key is configured, else ``offline``). Offline runs are kept in ``$WANDB_DIR/wandb/``
when ``WANDB_DIR`` is set, else in the run directory (``<run dir>/wandb/offline-run-*``); upload them
later with ``wandb sync <dir>/wandb/offline-run-*``.
W&B failures are warnings: a run whose W&B logging cannot start online falls back to offline (then to
disabled), and trains on.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from pytorch_lightning.loggers import TensorBoardLogger as LightningTensorBoardLogger
from pytorch_lightning.loggers import WandbLogger as LightningWandbLogger

from src.run.records import RunRecord
from src.run.wandb_mode import resolve_mode

log = logging.getLogger(__name__)


def _warn(message: str) -> None:
    """A W&B problem is a warning (in the run's log and on stderr), never an exception."""
    log.warning(message)


def default_name(identity: Mapping[str, Any]) -> str | None:
    """The run's overrides (Hydra's ``job.override_dirname``), else ``norm=…,batch=…,seed=…``."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized() and HydraConfig.get().job.override_dirname:
            return str(HydraConfig.get().job.override_dirname)
    except Exception:
        pass
    parts = [f"{key}={identity[key]}" for key in ("norm", "batch", "seed") if identity.get(key) is not None]
    return ",".join(parts) or None


def _plain(value: Any) -> Any:
    if isinstance(value, DictConfig | ListConfig):
        return OmegaConf.to_container(value, resolve=True)
    return value


class WandbLogger(LightningWandbLogger):
    """Lightning's WandbLogger with normlab's defaults.

    Args:
        save_dir: where ``wandb/`` goes (the run directory); ``$WANDB_DIR`` wins when set.
        mode: ``online`` | ``offline`` | ``disabled``; ``None`` resolves it (see :func:`resolve_mode`).
        name: the run's name; ``None`` names it by the run's overrides (Hydra's ``job.override_dirname``,
            e.g. ``batch=2,norm=bn,seed=0``), or by its identity outside a Hydra job.
        identity: the run record's identity (:meth:`src.run.records.RunRecord.identity`: study, norm, batch,
            dataset, model, seed, epochs), which src.training.experiment hands to every logger that takes one:
            the W&B config's ``identity`` from the start, and the default tags ``norm=…``, ``batch=…``,
            ``dataset=…``, ``model=…``.
        tags: the run's tags; ``None`` uses the identity's.
        **kwargs: everything else of :class:`pytorch_lightning.loggers.WandbLogger` and ``wandb.init``
            (project, entity, group, job_type, config, …).
    """

    def __init__(
        self,
        save_dir: str = ".",
        mode: str | None = None,
        name: str | None = None,
        identity: Mapping[str, Any] | None = None,
        tags: Iterable[str] | None = None,
        **kwargs: Any,
    ):
        kwargs = {key: _plain(value) for key, value in kwargs.items()}
        identity = dict(_plain(identity) or {})
        if tags is None:
            tags = [f"{key}={identity[key]}" for key in ("norm", "batch", "dataset", "model") if key in identity]
        config = dict(kwargs.pop("config", None) or {})
        if identity:
            config.setdefault("identity", identity)
        super().__init__(
            save_dir=os.environ.get("WANDB_DIR") or save_dir,
            name=name or default_name(identity),
            mode=resolve_mode(mode),
            tags=[str(tag)[:64] for tag in _plain(tags)],
            config=config or None,
            **kwargs,
        )

    @property
    def experiment(self) -> Any:
        """The W&B run; if it cannot start online (no network, a bad key) it falls back to offline, and if
        offline fails too, to disabled, each time with one warning: W&B never stops a run."""
        try:
            return super().experiment
        except Exception as error:
            mode = self._wandb_init.get("mode")
            if mode == "disabled":
                raise
            fallback = "disabled" if mode == "offline" else "offline"
            _warn(f"W&B could not start {mode} ({type(error).__name__}: {error}); this run logs to W&B {fallback}")
            self._wandb_init["mode"] = fallback
            self._experiment = None
            return self.experiment


def _hydra_mode() -> tuple[str | None, list[str]]:
    """The Hydra job's mode (``MULTIRUN``/``RUN``) and task overrides, or ``(None, [])`` outside a job."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            hydra_cfg = HydraConfig.get()
            return str(getattr(hydra_cfg.mode, "name", hydra_cfg.mode)), list(hydra_cfg.overrides.task)
    except Exception:
        pass
    return None, []


class TensorBoardLogger(LightningTensorBoardLogger):
    """Lightning's TensorBoardLogger with the study as the log folder and the run's overrides as its name.

    ``save_dir`` is the run directory (src.training.experiment passes it); the events go beside the study's runs:
    a multirun's into ``<sweep dir>/tensorboard/<overrides>/`` (``multirun/<study>/tensorboard/batch=2,norm=bn/``),
    a single run's into ``<outputs/study>/tensorboard/<overrides>/<date_time>/``. ``tensorboard --logdir
    multirun/<study>/tensorboard`` then lists the study's runs by their overrides.

    Args:
        save_dir: the run directory.
        root: the log folder; ``None``: ``tensorboard/`` beside the run directory (the study's folder).
        name: the run's name in TensorBoard; ``None``: its overrides less steering keys (the run
            directory's name in a multirun).
        **kwargs: everything else of :class:`pytorch_lightning.loggers.TensorBoardLogger`.
    """

    def __init__(self, save_dir: str = ".", root: str | None = None, name: str | None = None, **kwargs: Any):
        from src.run.config_keys import run_dirname

        run_dir = Path(save_dir).resolve()
        mode, overrides = _hydra_mode()
        if name is None:
            name = run_dir.name if mode == "MULTIRUN" else (run_dirname(overrides) or "default")
        version = kwargs.pop("version", None)
        if version is None:
            version = "" if mode == "MULTIRUN" else run_dir.name
        super().__init__(
            save_dir=str(root or run_dir.parent / "tensorboard"),
            name=name,
            version=version,
            default_hp_metric=False,
            **kwargs,
        )


def _finite(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int | float) and math.isfinite(value)


def _as_record(record: RunRecord | Mapping[str, Any]) -> RunRecord:
    return record if isinstance(record, RunRecord) else RunRecord.from_dict(record)


def record_summary(record: RunRecord | Mapping[str, Any]) -> dict[str, Any]:
    """What goes into the W&B run summary: identity, final metrics, timing, norm state, status."""
    record = _as_record(record)
    summary: dict[str, Any] = {key: value for key, value in record.identity().items() if value is not None}
    for section in (record.metrics, record.timing):
        summary.update({k: v for k, v in section.items() if _finite(v)})
    for key in ("lr", "num_parameters"):
        if _finite(getattr(record, key)):
            summary[key] = getattr(record, key)
    if record.norm_state:
        summary["norm_state"] = record.norm_state
    summary["status"] = record.status
    if record.error:
        summary["error"] = str(record.error)[:1000]
    if record.run_dir:
        summary["run_dir"] = str(record.run_dir)
    return summary


def record_config(record: RunRecord | Mapping[str, Any]) -> dict[str, Any]:
    """The run's config: the resolved Hydra config and, under ``identity``, the flat identity fields."""
    record = _as_record(record)
    return {**record.config, "identity": record.identity(), "overrides": list(record.overrides)}


def _is_wandb(logger: Any) -> bool:
    return isinstance(logger, LightningWandbLogger)


HPARAM_METRICS = ("test_error", "best_val_error", "val_error", "train_loss")


def record_hparams(record: RunRecord | Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, float]]:
    """TensorBoard's HParams of a run: its identity (norm, batch, model, dataset, epochs, seed, study), its
    learning rate, weight standardization and G; and its final metrics as ``hparams/<metric>``."""
    record = _as_record(record)
    params: dict[str, Any] = {k: v for k, v in record.identity().items() if v is not None}
    if _finite(record.lr):
        params["lr"] = record.lr
    for key in ("standardize_weights", "norm_groups"):
        if key in (record.config or {}):
            params[key] = record.config[key]
    metrics = {f"hparams/{k}": float(record.metrics[k]) for k in HPARAM_METRICS if _finite(record.metrics.get(k))}
    return params, metrics


def publish_record(loggers: Iterable[Any], record: RunRecord | Mapping[str, Any]) -> None:
    """For each TensorBoard logger: the run's HParams (:func:`record_hparams`) with its final metrics, so
    TensorBoard's HParams tab compares norms and batches. For each W&B logger: put the record into its
    run's summary and config, then finish the run.

    Called by :func:`src.training.single.train` right after the run record is written, whatever the
    run's status (a failed or diverged run's W&B run finishes with exit code 1). Other loggers are
    ignored. Never raises: a failure is a warning and the next logger is still published and finished.
    A logger whose W&B run never started (the run failed before logging anything) is left alone.
    """
    for logger in list(loggers or []):
        if isinstance(logger, LightningTensorBoardLogger):
            try:
                params, metrics = record_hparams(record)
                # Lightning wrote hparams.yaml at the fit's end, empty, and saves it only when absent
                (Path(logger.log_dir) / "hparams.yaml").unlink(missing_ok=True)
                logger.log_hyperparams(params, metrics)
                logger.finalize("success" if _as_record(record).completed else "failed")
            except Exception as error:
                _warn(f"TensorBoard hparams not written: {type(error).__name__}: {error}")
            continue
        if not _is_wandb(logger):
            continue
        run = None
        try:
            run = getattr(logger, "_experiment", None)
            if run is not None:
                run.config.update(record_config(record), allow_val_change=True)
                run.summary.update(record_summary(record))
        except Exception as error:
            _warn(f"W&B summary not written: {type(error).__name__}: {error}")
        finally:
            try:
                if run is not None:
                    run.finish(exit_code=0 if _as_record(record).completed else 1)
            except Exception as error:
                _warn(f"W&B run not finished cleanly: {type(error).__name__}: {error}")
