"""What a run directory says about a run: its lock, and whether to skip, resume, refuse or retrain it.

Rerunning a multirun lands every job in the same directory (``multirun/<study>/<overrides>``), so the
directory is where a job learns whether its config already completed (skip), was interrupted (resume
from ``checkpoints/last.ckpt``), or is being trained by another process right now (the lock).

Under DDP every rank runs the same job in the same directory: only the main process (rank 0) takes the
lock and writes the record; the other ranks read the directory to make the same skip/resume decision.
"""

from __future__ import annotations

import os
import re
import socket
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from src.atomic import write_text_atomic
from src.config_keys import changed_keys, config_hash
from src.records import RECORD_FILE, read_record

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
LOCK_FILE = ".lock"
LOCK_OWNER_FILE = ".lock.owner"  # host and pid of the holder (filelock truncates the lock file itself)
REFUSAL_FILE = "refused.txt"
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# What Lightning's DDP launcher and process-group setup put into the main process's environment.
LAUNCHER_ENV = ("MASTER_ADDR", "MASTER_PORT", "NODE_RANK", "LOCAL_RANK", "WORLD_SIZE")


@dataclass(frozen=True)
class PreviousRun:
    """What an earlier job left in a run directory."""

    record: dict[str, Any] | None
    checkpoint: Path | None

    @property
    def digest(self) -> str | None:
        """The earlier run's config hash under today's definition (recomputed from its stored config,
        so a change of what the hash covers does not orphan finished runs)."""
        record = self.record or {}
        if isinstance(record.get("config"), dict):
            return config_hash(record["config"])
        return record.get("config_hash")

    @property
    def completed(self) -> bool:
        return (self.record or {}).get("status") == "completed"

    def completed_with(self, digest: str) -> bool:
        return self.completed and self.digest == digest


def previous_run(run_dir: Path) -> PreviousRun:
    record_path = run_dir / RECORD_FILE
    try:
        record = read_record(record_path) if record_path.exists() else None
    except (OSError, ValueError):
        record = None
    checkpoint = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    return PreviousRun(record, checkpoint if checkpoint.exists() else None)


class RunRefused(RuntimeError):
    """The run directory holds a completed record of another config: retraining would overwrite it."""


def refusal(run_dir: Path, old_config: dict[str, Any], new_config: dict[str, Any]) -> str:
    """One line: why a completed run is not retrained, what differs (old → new) and how to proceed."""
    changes = changed_keys(old_config, new_config) or ["(what the config hash covers changed)"]
    shown = "; ".join(changes[:6]) + (f"; and {len(changes) - 6} more" if len(changes) > 6 else "")
    return (
        f"{run_dir}: refused: it holds a completed run of another config ({shown}); force=true retrains "
        f"and keeps the old record as result.<hash>.json"
    )


def archive_record(run_dir: Path, digest: str | None) -> Path:
    """Rename ``result.json`` to ``result.<hash>.json`` (``.<n>`` added if that exists) before a forced
    retrain, so no completed result is ever lost."""
    target = run_dir / f"result.{digest or 'unknown'}.json"
    number = 1
    while target.exists():
        target = run_dir / f"result.{digest or 'unknown'}.{number}.json"
        number += 1
    os.replace(run_dir / RECORD_FILE, target)
    return target


class RunLocked(RunRefused):
    """Another process holds the run directory's lock (a second sweep of the same study, say)."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``run_dir/.lock`` (``filelock``) for the duration of a run.

    Non-blocking: a second process fails at once with one line naming the holder (host and pid, which
    the holder writes into .lock.owner). The operating system releases the lock when its process
    dies, so a killed job never leaves a stale lock behind (its owner file may stay, harmlessly).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        holder = _lock_holder(run_dir / LOCK_OWNER_FILE)
        message = f"{run_dir} is being trained by another process ({holder}); wait for it, or stop it and rerun"
        write_text_atomic(run_dir / REFUSAL_FILE, message + "\n")  # for the sweep's summary
        raise RunLocked(message) from None
    try:
        (run_dir / LOCK_OWNER_FILE).write_text(f"host {socket.gethostname()} pid {os.getpid()}\n")
        yield
    finally:
        lock.release()


def _lock_holder(path: Path) -> str:
    try:
        return path.read_text().strip() or "holder unknown"
    except OSError:
        return "holder unknown"


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
    ``hydra.run.dir`` its output directory. Afterwards the process group is destroyed and the launcher's
    environment variables restored: with them left set, the next DDP job of a sequential multirun would
    take the process for an externally launched rank and wait for ranks that never come.
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


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (API keys, tokens, passwords)."""
    environ = dict(os.environ) if environ is None else environ
    found = {value for name, value in environ.items() if SECRET_NAME.search(name) and len(value) >= 6}
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret environment value replaced by ``***``."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, "***")
    return text
