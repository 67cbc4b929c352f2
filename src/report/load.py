"""Find and flatten run records into one pandas row per run."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pandas as pd

from src.records import RECORD_FILE, read_record

IDENTITY = ["study", "dataset", "model", "norm", "batch", "seed", "epochs"]
METRICS = ["test_error", "val_error", "best_val_error", "train_loss"]
TIMING = ["fit_seconds", "train_seconds", "train_steps", "steps_per_second"]


def flatten(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """One flat row: identity, metrics, timing, provenance."""
    environment = record.get("environment", {})
    row: dict[str, Any] = {key: record.get(key) for key in IDENTITY}
    row["status"] = record.get("status")
    row["lr"] = record.get("lr")
    row.update({key: record.get("metrics", {}).get(key) for key in METRICS})
    row.update({key: record.get("timing", {}).get(key) for key in TIMING})
    row["overrides"] = ",".join(record.get("overrides", []))
    row["device"] = environment.get("device")
    row["hostname"] = environment.get("machine", {}).get("hostname")
    row["git_commit"] = environment.get("git_commit")
    row["finished_at"] = record.get("finished_at")
    row["run_dir"] = str(path.parent)
    return row


def load_runs(directories: Iterable[str | Path]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Completed runs under ``directories`` as a DataFrame, and (path, reason) for runs not counted."""
    rows: list[dict[str, Any]] = []
    skipped: list[tuple[str, str]] = []
    for directory in directories:
        directory = Path(directory)
        if not directory.exists():
            skipped.append((str(directory), "directory does not exist"))
            continue
        paths = [directory] if directory.is_file() else sorted(directory.rglob(RECORD_FILE))
        for path in paths:
            try:
                record = read_record(path)
            except (OSError, ValueError, json.JSONDecodeError) as error:
                skipped.append((str(path), f"unreadable: {error}"))
                continue
            status = record.get("status")
            if status != "completed":
                skipped.append((str(path), f"status {status}: {record.get('error', 'no error recorded')}"))
                continue
            rows.append(flatten(record, path))
    frame = pd.DataFrame(rows, columns=list(flatten({}, Path("x")).keys()))
    return frame, skipped
