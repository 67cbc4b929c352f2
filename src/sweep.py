"""A Hydra callback that ends a multirun with the list of runs that failed, diverged or were refused."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from src.records import RECORD_FILE, read_record
from src.resume import REFUSAL_FILE

log = logging.getLogger(__name__)
UNSUCCESSFUL = ("failed", "diverged")


class SweepSummary(Callback):
    """After a multirun: print each run of this invocation that failed, diverged or was refused (a
    completed run of another config in its directory), and exit non-zero.

    A run belongs to this invocation when its ``result.json`` (or ``refused.txt``) was written after the
    multirun began (skipped runs, completed earlier, are not rewritten and do not count).
    """

    def __init__(self) -> None:
        self.started = time.time()

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.started = time.time()

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
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
        if problems:
            print(f"{len(problems)} run(s) of this sweep did not complete:", *problems, sep="\n", file=sys.stderr)
            raise SystemExit(1)
