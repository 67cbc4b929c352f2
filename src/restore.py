"""Put a study's committed records back where a sweep looks for them, so that it continues instead of
retraining: ``python -m src.restore results/<study>/runs.jsonl [--into multirun/<study>]``, or a GPU
visit's bundle: ``python -m src.restore <out>/<study>.tar.gz [--into multirun]`` (:mod:`src.gpu_study`).

A sweep skips a run whose directory holds a completed ``result.json`` of the same config hash
(:mod:`src.run.resume`). A study that did not fit one working session is committed as
``results/<study>/runs.jsonl``; on another machine its run directories are gone. This writes each
completed record into ``<into>/<run directory name>/result.json`` (the name its sweep gave it), never
over an existing record, so the same sweep command then trains only the runs still missing.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from src.run.bundle import BundleError, unbundle
from src.run.records import RECORD_FILE, RunRecord, read_runs, write_record


def restore(runs_file: Path, into: Path) -> tuple[list[Path], list[str]]:
    """Write every completed record of ``runs_file`` into ``into``; (directories written, lines skipped
    with the reason: unreadable, not completed, no run directory, or a record already there)."""
    written: list[Path] = []
    skipped: list[str] = []
    for number, record in read_runs(runs_file):
        if not isinstance(record, RunRecord):
            skipped.append(f"line {number}: unreadable ({record})")
        elif record.status != "completed":
            skipped.append(f"line {number}: status {record.status}")
        elif not record.run_dir:
            skipped.append(f"line {number}: the record names no run directory")
        else:
            target = into / Path(record.run_dir).name
            if (target / RECORD_FILE).exists():
                skipped.append(f"line {number}: {target / RECORD_FILE} exists (left as it is)")
                continue
            write_record(target, record)
            written.append(target)
    return written, skipped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.restore", description=__doc__.split("\n\n")[0])
    parser.add_argument("runs", type=Path, help="a committed results/<study>/runs.jsonl, or a gpu-study bundle")
    parser.add_argument("--into", type=Path, help="the study's sweep directory (default: multirun/<study>)")
    args = parser.parse_args(argv)
    if not args.runs.is_file():
        print(
            f"error: {args.runs} is not a file (give results/<study>/runs.jsonl or a gpu-study bundle"
            " <out>/<study>.tar.gz)",
            file=sys.stderr,
        )
        return 2
    if args.runs.name.endswith(".tar.gz"):
        into = args.into or Path("multirun")
        try:
            written, skipped = unbundle(args.runs, into)
        except BundleError as error:
            print(f"error: {error}; nothing was restored", file=sys.stderr)
            return 2
        print(f"restored {len(written)} files of {args.runs} into {into}/; {len(skipped)} left as they were")
        return 0
    into = args.into or Path("multirun") / args.runs.resolve().parent.name
    written, skipped = restore(args.runs, into)
    print(f"restored {len(written)} completed runs into {into}/; {len(skipped)} lines skipped")
    for reason in skipped:
        print(f"  {reason}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
