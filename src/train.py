"""Train one configuration and write its run record: ``python -m src.train [overrides]``.

The command only: Hydra composes the config (``conf/train.yaml``; a study with ``experiment=<name>``),
the job runs inside its DDP ranks' set-up (:mod:`src.run.distributed`) on its GPU of a parallel sweep,
and :func:`src.training.single.train` trains it through the run lifecycle (:mod:`src.run.lifecycle`:
the resume decision, the record written when the run starts and when it ends). A run that fails or is
refused is one line on the console (the traceback goes to its log file); a multirun goes on.
"""

from __future__ import annotations

import logging
import math
import sys
import traceback
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from src.run.config_keys import register_resolvers
from src.studies import experiment_choice
from src.studies import register_resolver as register_studies_resolver

log = logging.getLogger(__name__)
register_resolvers()  # before Hydra composes: the sweep's run directory names use ${run_dirname:…}
register_studies_resolver()  # --help lists the studies: ${studies:}


def log_traceback_to_file(text: str, run_dir: Path) -> None:
    """Append a traceback to the log files inside ``run_dir`` only (the console gets the one-line error,
    and the log files of other runs in this process get nothing)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler) and Path(handler.baseFilename).resolve().is_relative_to(
            run_dir.resolve()
        ):
            handler.emit(logging.LogRecord(__name__, logging.ERROR, __file__, 0, text, None, None))


# absolute, so the config is found whatever runs this module: python -m src.train, or the normlab-train command
CONF_DIR = str(Path(__file__).resolve().parents[1] / "conf")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
def main(cfg: DictConfig) -> float:
    # imported here, not at the top: `--help`, `--cfg` and tab completion then never load torch (< 3 s)
    from src.run.distributed import distributed_job
    from src.run.identity import launch_description
    from src.run.provenance import redact
    from src.run.resume import RunRefused
    from src.training.perf import gpu_for_job
    from src.training.preflight import first_unbuildable
    from src.training.single import train
    from src.training.validation import ConfigError, check_device, validate_config

    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    if hydra_cfg.mode != RunMode.MULTIRUN:  # a sweep's jobs were checked before its first (CheckedSweeper)
        try:
            validate_config(cfg)
            check_device(cfg)
        except ConfigError as error:
            print(f"error: {error}; nothing was trained", file=sys.stderr)
            raise SystemExit(2) from None
        unbuildable = first_unbuildable([cfg])  # its data and network, before its run directory is written
        if unbuildable is not None:
            print(f"error: {unbuildable[1]}; nothing was trained", file=sys.stderr)
            raise SystemExit(2)
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


def cli() -> None:
    """``normlab-train`` (pyproject's console script) and ``python -m src.train``."""
    sys.argv = experiment_choice(sys.argv)  # +experiment=<name> as experiment=<name> (conf/train.yaml)
    main()


if __name__ == "__main__":
    cli()
