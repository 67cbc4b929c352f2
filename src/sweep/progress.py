"""Progress of a sweep (:class:`SweepProgress`, used by :class:`src.sweep.summary.SweepSummary`).

Every job, in whichever process the launcher runs it (basic: the sweep's own; parallel: a joblib
worker; submitit: its own job), appends its outcome to ``<sweep dir>/.progress/<sweep start>.jsonl``
and prints ``[k/N] <overrides>: <status> <test error> (<time>)`` with the runs skipped, failed and left
and an ETA from the finished runs. Under submitit, whose jobs' output goes to their own log files, the
sweep's process prints the lines as they arrive. A run's own progress (a bar, or a line per epoch) is
:func:`src.training.callbacks.progress_callback`.
"""

from __future__ import annotations

import json
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from src.run.provenance import redact
from src.training.callbacks import fmt_seconds

PROGRESS_DIR = ".progress"
_pollers: dict[str, tuple[threading.Thread, threading.Event]] = {}


def sweep_size(hydra_cfg: Any) -> tuple[int | None, list[str]]:
    """The number of jobs of a basic-sweeper multirun (the product of the sweep's choices: the
    ``hydra.sweeper.params`` and the command line's, as Hydra's BasicSweeper expands them) and the keys
    swept over (more than one value)."""
    try:
        from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
        from hydra.core.override_parser.overrides_parser import OverridesParser

        params = dict(hydra_cfg.sweeper.get("params") or {})
        overrides = [f"{key}={value}" for key, value in params.items()] + list(hydra_cfg.overrides.task)
        parsed = OverridesParser.create().parse_overrides(overrides)
        swept = sorted({o.get_key_element() for o in parsed if o.is_sweep_override()})
        return sum(len(batch) for batch in BasicSweeper.split_arguments(parsed, None)), swept
    except Exception:  # another sweeper (optuna, …): no total
        return None, []


def job_label(task_overrides: Sequence[str], swept: Sequence[str], run_dir: Path) -> str:
    """The overrides of a job that the sweep varies (``batch=2,norm=bn``), else its run directory's name."""
    kept = [str(o) for o in task_overrides if str(o).split("=", 1)[0] in set(swept)]
    return ",".join(sorted(kept)) or Path(run_dir).name


class SweepProgress:
    """The sweep's progress file and its lines (state is plain, so it pickles to a launcher's workers)."""

    def __init__(self, sweep_dir: Path, total: int | None, started: float) -> None:
        self.path = Path(sweep_dir) / PROGRESS_DIR / f"{time.strftime('%Y%m%d-%H%M%S', time.localtime(started))}.jsonl"
        self.total = total
        self.started = started

    def add(self, event: Mapping[str, Any]) -> str:
        """Append one job's outcome; the line to print for it."""
        from filelock import FileLock

        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path) + ".lock"):
            with self.path.open("a", encoding="utf-8") as file:
                file.write(redact(json.dumps(dict(event))) + "\n")
            events = self.events()
        return self.line(events, len(events) - 1)

    def events(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text(encoding="utf-8").splitlines() if line.strip()]

    def line(self, events: Sequence[Mapping[str, Any]], index: int) -> str:
        """``[k/N] overrides: status error (time), s skipped, f failed, l left, ETA …`` for events[index]."""
        event, done = events[index], events[: index + 1]
        k, total = index + 1, self.total
        status = event["status"]
        error = event.get("test_error")
        result = f"{status} {error:.2f}%" if isinstance(error, int | float) and math.isfinite(error) else status
        label = event["overrides"] or "(no overrides)"
        text = f"[{k}/{total or '?'}] {label}: {result} ({fmt_seconds(event['seconds'])})"
        skipped = sum(e["status"] == "skipped" for e in done)
        reused = sum(e["status"] == "reused" for e in done)
        failed = sum(e["status"] not in ("completed", "skipped", "reused") for e in done)
        counts = [f"{skipped} skipped", *([f"{reused} reused"] if reused else []), f"{failed} failed"]
        if total:
            left = max(total - k, 0)
            counts.append(f"{left} left")
            trained = k - skipped - reused
            if left and trained:
                elapsed = event["finished"] - self.started
                counts.append(f"ETA {fmt_seconds(elapsed / trained * left)}")
        return f"{text}; {', '.join(counts)}"

    # the sweep's own process prints what jobs in other processes (submitit) wrote
    def start_printing(self, interval: float = 2.0) -> None:
        stop = threading.Event()

        def poll() -> None:
            printed = 0
            while True:
                stopping = stop.wait(interval)
                try:
                    events = self.events()
                except (OSError, ValueError):
                    events = []
                for index in range(printed, len(events)):
                    print(self.line(events, index), flush=True)
                printed = max(printed, len(events))
                if stopping:
                    return

        thread = threading.Thread(target=poll, name="sweep-progress", daemon=True)
        _pollers[str(self.path)] = (thread, stop)
        thread.start()

    def stop_printing(self) -> None:
        thread, stop = _pollers.pop(str(self.path), (None, None))
        if thread is not None and stop is not None:
            stop.set()
            thread.join(timeout=10)


def job_event(run_dir: Path, overrides: str, started: float, job_started: float, job_failed: bool) -> dict[str, Any]:
    """One job's outcome from what it left in its run directory: completed, diverged or failed (with
    its test error), skipped (a record completed before this sweep began; any other status of an older record, e.g.
    a killed run's "running", is shown as it is), reused (copied from another sweep, ``reuse_from``) or refused."""
    from src.run.records import RECORD_FILE, read_record
    from src.run.resume import REFUSAL_FILE

    now = time.time()
    status, error = "failed" if job_failed else "unknown", math.nan
    record_path, refusal = Path(run_dir) / RECORD_FILE, Path(run_dir) / REFUSAL_FILE
    if refusal.exists() and refusal.stat().st_mtime >= job_started:
        status = "refused"
    elif record_path.exists():
        try:
            record = read_record(record_path)
            status = str(record.get("status", status))
            error = (record.get("metrics") or {}).get("test_error", math.nan)
            if status == "completed" and record_path.stat().st_mtime < started:
                status = "skipped"
            elif status == "completed" and record.get("reused_from"):
                status = "reused"
        except (OSError, ValueError):
            status = "unreadable"
    return {
        "overrides": overrides,
        "status": status,
        "test_error": error if isinstance(error, int | float) else math.nan,
        "seconds": round(now - job_started, 1),
        "finished": now,
        "pid": os.getpid(),
    }
