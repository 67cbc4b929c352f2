"""The resume decision: what a run directory says about a run, and whether to skip, resume, refuse or
retrain it, under the directory's lock.

Rerunning a multirun lands every job in the same directory (``multirun/<study>/<overrides>``), so the
directory is where a job learns whether its config already completed (skip), was interrupted (resume
from ``checkpoints/last.ckpt``), or is being trained by another process right now (the lock). "The same
config" is the same :func:`src.run.config_keys.config_hash`, recomputed from the earlier record's stored
config.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from src.run.atomic import write_text_atomic
from src.run.config_keys import changed_keys, config_hash
from src.run.records import RECORD_FILE, read_record

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
LOCK_FILE = ".lock"
LOCK_OWNER_FILE = ".lock.owner"  # host and pid of the holder (filelock truncates the lock file itself)
REFUSAL_FILE = "refused.txt"


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
    """The record and checkpoint an earlier job left in ``run_dir`` (an unreadable record counts as none)."""
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


class Action(Enum):
    """What to do with a run directory."""

    SKIP = "skip"  # completed earlier with the same config
    REFUSE = "refuse"  # completed earlier with another config, and no force
    TRAIN = "train"  # train, from scratch or from ``resume_from``


@dataclass(frozen=True)
class Decision:
    """The resume decision for one run directory (see :func:`decide`)."""

    action: Action
    previous: PreviousRun
    resume_from: Path | None = None
    message: str = ""


def decide(run_dir: Path, config: dict[str, Any], digest: str, force: bool, resume: bool) -> Decision:
    """Skip, refuse or train, from what ``run_dir`` holds; pure (touches no file).

    - a completed record with hash ``digest``: skip (``force``: retrain from scratch);
    - a completed record of another hash: refuse with one line naming the changed keys (``force``: retrain);
    - a checkpoint left by an interrupted run of the same hash: resume from it when ``resume`` and not
      ``force``; otherwise train from scratch (the caller deletes the stale checkpoint).
    """
    previous = previous_run(run_dir)
    if previous.completed and not force:
        if previous.completed_with(digest):
            return Decision(Action.SKIP, previous)
        return Decision(Action.REFUSE, previous, message=refusal(run_dir, previous.record.get("config") or {}, config))
    same = previous.checkpoint is not None and previous.digest == digest
    return Decision(Action.TRAIN, previous, previous.checkpoint if same and resume and not force else None)


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
    lock = FileLock(run_dir / LOCK_FILE, timeout=0)
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
