"""What identifies a run in its record: the identity fields reports group by (study, norm, batch, …),
how the run was launched (the primary config and Hydra overrides, to rebuild its command line), and
the time stamps."""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hydra.types import RunMode
from omegaconf import DictConfig


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
