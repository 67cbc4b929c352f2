"""Distributed ranks: which process is rank 0, and how the DDP ranks Lightning starts find their job.

Under DDP every rank runs the same job in the same run directory: only the main process (rank 0) takes
the run lock and writes the record; the other ranks read the directory to make the same skip/resume
decision.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

# What Lightning's DDP launcher and process-group setup put into the main process's environment.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


def is_main_process(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is rank 0 of its distributed launch (or not part of one).

    The launcher's environment says: ``RANK`` (torchrun); ``LOCAL_RANK`` and ``NODE_RANK``, which
    Lightning's DDP launcher gives the processes it starts for ranks 1..N-1 (and sets to 0 in the main
    process); ``SLURM_PROCID`` in every task of a SLURM job step (srun, submitit). ``LOCAL_RANK`` is read
    before ``SLURM_PROCID`` because processes Lightning starts inside a one-task SLURM job inherit
    ``SLURM_PROCID=0``.
    """
    env = os.environ if environ is None else environ
    if env.get("RANK"):
        return int(env["RANK"]) == 0
    if env.get("LOCAL_RANK"):
        return int(env["LOCAL_RANK"]) == 0 and int(env.get("NODE_RANK") or env.get("GROUP_RANK") or 0) == 0
    if env.get("SLURM_PROCID"):
        return int(env["SLURM_PROCID"]) == 0
    return True


def single_run_argv(argv: Sequence[str], task_overrides: Sequence[str], hydra_overrides: Sequence[str]) -> list[str]:
    """The command line that runs one job of a multirun on its own: ``argv``'s config flags (config
    path, dir and name), the job's hydra and task overrides, and ``hydra.mode=RUN``; no ``-m`` and no sweep."""
    from hydra._internal.utils import get_args_parser

    args = get_args_parser().parse_args(list(argv[1:]))
    command = [argv[0]]
    for flag, value in (
        ("--config-path", args.config_path),
        ("--config-dir", args.config_dir),
        ("--config-name", args.config_name),
    ):
        if value is not None:
            command += [flag, value]
    kept = [item for item in hydra_overrides if not item.lstrip("+~").startswith("hydra.mode=")]
    return [*command, *kept, *task_overrides, "hydra.mode=RUN"]


@contextmanager
def distributed_job(hydra_cfg: Any) -> Iterator[None]:
    """Around one Hydra job (``hydra_cfg`` is ``HydraConfig.get()``): the DDP ranks Lightning starts run
    this job in this job's directory, and the job leaves no process group behind for the next one.

    Lightning's DDP launcher starts ranks 1..N-1 as ``python -m src.train <sys.argv[1:]>
    hydra.run.dir=<HydraConfig.get().run.dir> hydra.job.name=train_ddp_process_<rank> hydra.output_subdir=null``.
    In a multirun that argv is the whole sweep and ``hydra.run.dir`` is not the job's directory, so for the
    duration of the job ``sys.argv`` is this job's single-run command line (:func:`single_run_argv`) and
    ``hydra.run.dir`` its output directory. Afterwards ``sys.argv``, ``hydra.run.dir`` and the launcher's
    environment variables are restored and the process group destroyed: with them left set, the next DDP
    job of a sequential multirun would take the process for an externally launched rank and wait for
    ranks that never come.
    """
    from hydra.types import RunMode
    from omegaconf import OmegaConf, read_write

    saved_argv = list(sys.argv)
    saved_env = {key: os.environ.get(key) for key in LAUNCHER_ENV}
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    saved_run_dir = OmegaConf.to_container(hydra_cfg.run)["dir"] if multirun else None
    if multirun:
        sys.argv = single_run_argv(sys.argv, list(hydra_cfg.overrides.task), list(hydra_cfg.overrides.hydra))
        with read_write(hydra_cfg.run):
            hydra_cfg.run.dir = str(hydra_cfg.runtime.output_dir)
    try:
        yield
    finally:
        sys.argv = saved_argv
        if multirun:
            with read_write(hydra_cfg.run):
                hydra_cfg.run.dir = saved_run_dir
        import torch.distributed

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
