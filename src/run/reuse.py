"""Runs reused across studies: a job whose computation another sweep already completed copies that run.

Two studies may hold the same computation: norm_compare_cifar10's bn and gn cells at batch 32 are
small_batch_cifar10's batch-32 cells (same recipe, seeds and schedules; only ``study`` and ``report``, which
steer, differ). ``reuse_from: [<sweep dir>, …]`` lets a job take such a run instead of training it again: a
completed record in ``<sweep dir>/*/result.json`` whose config hash (:func:`src.run.config_keys.config_hash`,
recomputed from its stored config) equals the job's is copied into the job's run directory, files and all
(checkpoints, locks and refusals excepted).

The copied record is the job's under its own identity (study, overrides, launch, run directory and resolved
config: the new study's, whose computation view is the same by construction) and keeps everything the
training produced: metrics, curve, timing, start and end times, the commit and machine it trained on. It
says where it came from in ``reused_from`` (``run_dir``, ``study``, ``at``), so a report can tell a reused run
from one trained for the study, and no record claims a training it did not have.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from src.run.identity import now
from src.run.records import RECORD_FILE, RunRecord, read_record, write_record
from src.run.resume import CHECKPOINT_DIR, LOCK_FILE, LOCK_OWNER_FILE, REFUSAL_FILE, previous_run

# what a run directory holds that belongs to its own job, not to the run: never copied
NOT_COPIED = frozenset({RECORD_FILE, CHECKPOINT_DIR, LOCK_FILE, LOCK_OWNER_FILE, REFUSAL_FILE})


def source_dirs(value: Any) -> list[Path]:
    """``reuse_from`` as paths: a list of directories (one string reads as a list of one; null as none)."""
    if value is None:
        return []
    if isinstance(value, str | Path):
        return [Path(value)]
    return [Path(str(item)) for item in value]


def find_completed(sources: Iterable[Path], digest: str, exclude: Path | None = None) -> Path | None:
    """The first run directory under ``sources`` (each a sweep directory, searched one level deep in
    sorted order) holding a completed record of config hash ``digest``; ``exclude`` (the job's own
    directory) is never returned. Unreadable records are passed over."""
    own = exclude.resolve() if exclude is not None else None
    for source in sources:
        for path in sorted(Path(source).glob(f"*/{RECORD_FILE}")):
            if own is not None and path.parent.resolve() == own:
                continue
            if previous_run(path.parent).completed_with(digest):  # unreadable records read as none
                return path.parent
    return None


def copy_run(
    source: Path,
    run_dir: Path,
    identity: dict[str, Any],
    config: dict[str, Any],
    digest: str,
    launch: dict[str, Any] | None,
) -> RunRecord:
    """Copy the run in ``source`` into ``run_dir`` under the job's ``identity`` (study, overrides, norm,
    …), resolved ``config``, ``digest`` and ``launch``; write its record last, so an interrupted copy leaves
    no record (the next sweep copies again). Returns the record written."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for item in sorted(Path(source).iterdir()):
        if item.name in NOT_COPIED or item.name.startswith(f"{RECORD_FILE.split('.')[0]}."):
            continue  # result.<hash>.json: older records of the source's own directory
        target = run_dir / item.name
        if item.is_dir():
            shutil.copytree(item, target, dirs_exist_ok=True)
        else:
            shutil.copy2(item, target)
    original = RunRecord.from_dict(read_record(Path(source) / RECORD_FILE))
    record = RunRecord.from_dict(
        {
            **original.to_dict(),
            **identity,
            "run_dir": str(run_dir),
            "config": config,
            "config_hash": digest,
            "launch": launch,
            "reused_from": {"run_dir": str(source), "study": original.study, "at": now()},
        }
    )
    write_record(run_dir, record)
    return record
