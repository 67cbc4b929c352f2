"""A Hydra callback that reports a multirun's progress as each run ends (:mod:`src.sweep.progress`) and ends it
with the list of runs that failed, diverged or were refused."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.run.config_keys import computation_leaves, other_factors
from src.run.records import RECORD_FILE, read_record
from src.run.resume import REFUSAL_FILE
from src.sweep.progress import SweepProgress, job_event, job_label, sweep_size

log = logging.getLogger(__name__)
UNSUCCESSFUL = ("failed", "diverged")


class SweepSummary(Callback):
    """As each run of a multirun ends: ``[k/N] <overrides>: <status> <test error> (<time>)`` with the
    runs skipped, failed and left and an ETA (:class:`src.sweep.progress.SweepProgress`). After it: print
    each run of this invocation that failed, diverged or was refused (a
    completed run of another config in its directory), and exit non-zero.

    A run belongs to this invocation when its ``result.json`` (or ``refused.txt``) was written after the
    multirun began (skipped runs, completed earlier, are not rewritten and do not count).
    """

    def __init__(self) -> None:
        self.started = time.time()
        self.progress: SweepProgress | None = None
        self._job_started = self.started
        self._remote = False
        self._swept: list[str] = []

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()
        if "hydra" not in config:  # not a Hydra multirun's config (a test's, a caller's): no progress lines
            return
        total, self._swept = sweep_size(config.hydra)
        self.progress = SweepProgress(Path(config.hydra.sweep.dir), total, self.started)
        # submitit's jobs print into their own logs: this process prints their lines as they arrive
        self._remote = "submitit" in str(config.hydra.launcher.get("_target_", ""))
        if self._remote:
            self.progress.start_printing()

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._job_started = time.time()

    def on_job_end(self, config: DictConfig, job_return: Any, **kwargs: Any) -> None:
        if self.progress is None:  # a single run (no multirun started)
            return
        try:
            from hydra.core.utils import JobStatus

            run_dir = Path(config.hydra.runtime.output_dir)
            event = job_event(
                run_dir,
                job_label(list(config.hydra.overrides.task), self._swept, run_dir),
                self.started,
                self._job_started,
                job_return is not None and job_return.status == JobStatus.FAILED,
            )
            print(self.progress.add(event), flush=True)
        except Exception as error:  # progress never fails a run
            log.warning("sweep progress not recorded: %s: %s", type(error).__name__, error)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.progress is not None and self._remote:
            self.progress.stop_printing()
        sweep_dir = Path(config.hydra.sweep.dir)
        problems = []
        for path in sorted(sweep_dir.rglob(RECORD_FILE)):
            try:
                if path.stat().st_mtime < self.started:
                    continue
                record = read_record(path)
            except (OSError, ValueError):
                problems.append(f"  unreadable   {path}")
                continue
            if record.get("status") in UNSUCCESSFUL:
                problems.append(f"  {record['status']:<12} {path.parent}: {record.get('error', '')}")
        for path in sorted(sweep_dir.rglob(REFUSAL_FILE)):
            try:
                if path.stat().st_mtime >= self.started:
                    problems.append(f"  refused      {path.read_text().strip()}")
            except OSError:
                continue
        try:
            table = sweep_table([read_record(p) for p in sorted(sweep_dir.rglob(RECORD_FILE))])
            if table:
                study = config.get("study", "<study>")
                print(table, f"make report STUDY={study} for verdicts, intervals and plots", sep="\n", flush=True)
        except Exception as error:  # the table never fails a sweep
            log.warning("sweep table not printed: %s: %s", type(error).__name__, error)
        if problems:
            print(f"{len(problems)} run(s) of this sweep did not complete:", *problems, sep="\n", file=sys.stderr)
            raise SystemExit(1)


def sweep_table(records: list[dict[str, Any]]) -> str:
    """The sweep's completed runs as the GN paper's table: a row per norm, a column per batch, the mean
    test error over seeds (n); then, where the sweep has them, GN − BN per batch and BN's change from its
    largest batch to its smallest, the directions of the paper's claims. One table for each value of the
    sweep's other factors (:func:`src.run.config_keys.other_factors`: ``epochs=8``, ``epochs=16``). Empty
    without completed runs."""
    done = [r for r in records if r.get("status") == "completed" and r.get("metrics", {}).get("test_error") is not None]
    keys = other_factors([(r["norm"], int(r["batch"]), r.get("config") or {}) for r in done])
    groups: dict[str, list[dict[str, Any]]] = {}
    for record in done:
        leaves = computation_leaves(record.get("config") or {})
        setting = ", ".join(f"{key}={json.dumps(leaves[key]) if key in leaves else '(absent)'}" for key in keys)
        groups.setdefault(setting, []).append(record)
    return "\n".join(_one_table(group, setting) for setting, group in sorted(groups.items()))


def _one_table(records: list[dict[str, Any]], setting: str) -> str:
    """:func:`sweep_table` for runs of one setting (all completed)."""
    import pandas as pd

    rows = [{"norm": r["norm"], "batch": int(r["batch"]), "test_error": r["metrics"]["test_error"]} for r in records]
    frame = pd.DataFrame(rows)
    means = frame.pivot_table(index="norm", columns="batch", values="test_error", aggfunc="mean", sort=False)
    counts = frame.pivot_table(index="norm", columns="batch", values="test_error", aggfunc="count", sort=False)
    batches = sorted(means.columns)
    at = f" at {setting}" if setting else ""
    lines = [f"test error (%) of the sweep's runs{at}, mean over seeds (n runs):"]
    lines.append("norm".ljust(8) + "".join(f"batch {b}".rjust(14) for b in batches))
    for norm in means.index:
        cells = [
            f"{means.at[norm, b]:.2f} ({int(counts.at[norm, b])})" if pd.notna(means.at[norm, b]) else "–"
            for b in batches
        ]
        lines.append(str(norm).ljust(8) + "".join(cell.rjust(14) for cell in cells))
    if {"bn", "gn"} <= set(means.index):
        gaps = [means.at["gn", b] - means.at["bn", b] for b in batches]
        lines.append("gn − bn".ljust(8) + "".join(("–" if pd.isna(g) else f"{g:+.2f}").rjust(14) for g in gaps))
    if "bn" in means.index and len(batches) > 1:
        small, large = batches[0], batches[-1]
        rise = means.at["bn", small] - means.at["bn", large]
        if pd.notna(rise):
            lines.append(
                f"bn@{small} − bn@{large} = {rise:+.2f}: BN's error {'rises' if rise > 0 else 'does not rise'} at the"
                " small batch (the GN paper: it rises)"
            )
    return "\n".join(lines)
