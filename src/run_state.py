"""What a run directory says about a run: its config hash, its lock, and whether to skip or resume it.

Rerunning a multirun lands every job in the same directory (``multirun/<study>/<overrides>``), so the
directory is where a job learns whether its config already completed (skip), was interrupted (resume
from ``checkpoints/last.ckpt``), or is being trained by another process right now (the lock).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from src.records import RECORD_FILE, read_record

CHECKPOINT_DIR = "checkpoints"
LAST_CHECKPOINT = "last.ckpt"
LOCK_FILE = ".lock"
# Keys that do not change what a run computes: they are left out of the config hash.
UNHASHED_KEYS = ("force", "study", "logger")
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)


def config_hash(config: dict[str, Any]) -> str:
    """SHA-256 (16 hex digits) of the resolved config without :data:`UNHASHED_KEYS`."""
    kept = {key: value for key, value in config.items() if key not in UNHASHED_KEYS}
    return hashlib.sha256(json.dumps(kept, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class PreviousRun:
    """What an earlier job left in a run directory."""

    record: dict[str, Any] | None
    checkpoint: Path | None

    def completed_with(self, digest: str) -> bool:
        record = self.record or {}
        return record.get("status") == "completed" and record.get("config_hash") == digest


def previous_run(run_dir: Path) -> PreviousRun:
    record_path = run_dir / RECORD_FILE
    try:
        record = read_record(record_path) if record_path.exists() else None
    except (OSError, ValueError):
        record = None
    checkpoint = run_dir / CHECKPOINT_DIR / LAST_CHECKPOINT
    return PreviousRun(record, checkpoint if checkpoint.exists() else None)


class RunLocked(RuntimeError):
    """Another process holds the run directory's lock."""


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold an exclusive, non-blocking ``flock`` on ``run_dir/.lock`` for the duration of a run.

    The lock dies with its process, so a killed job never leaves a stale lock behind.
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    handle = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{run_dir} is being trained by another process (its .lock is held)") from None
        yield
    finally:
        os.close(handle)


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
