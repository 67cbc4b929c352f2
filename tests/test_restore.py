"""A study committed as runs.jsonl continues on another machine: restored records are skipped by the
sweep, and only missing runs train."""

from __future__ import annotations

import json

from src.restore import main, restore
from src.run.records import RECORD_FILE, read_runs, write_runs

from .conftest import run_train

FAST = ("dataset=digits", "model.widths=[8,16]", "logger=none", "trainer.accelerator=cpu", "epochs=1")


def test_restored_runs_are_skipped_and_the_missing_one_trains(tmp_path):
    first = tmp_path / "machine1"
    first.mkdir()
    done = run_train("-m", *FAST, "norm=bn,gn", "hydra.sweep.dir=multirun/s", cwd=first)
    assert done.returncode == 0, done.stderr[-2000:]
    records = [record for _, record in read_runs_from(first / "multirun" / "s")]
    runs_file = tmp_path / "results" / "s" / "runs.jsonl"
    runs_file.parent.mkdir(parents=True)
    write_runs(runs_file, records)

    second = tmp_path / "machine2"
    written, skipped = restore(runs_file, second / "multirun" / "s")
    assert len(written) == 2 and not skipped
    before = {p: p.read_bytes() for p in (second / "multirun" / "s").glob(f"*/{RECORD_FILE}")}
    again = run_train("-m", *FAST, "norm=bn,gn,ln", "hydra.sweep.dir=multirun/s", cwd=second)
    assert again.returncode == 0, again.stderr[-2000:]
    after = {p: json.loads(p.read_text()) for p in (second / "multirun" / "s").glob(f"*/{RECORD_FILE}")}
    assert len(after) == 3 and all(r["status"] == "completed" for r in after.values())
    for path, content in before.items():
        assert path.read_bytes() == content  # skipped, not retrained
    # restoring again leaves the records as they are, and says so
    assert restore(runs_file, second / "multirun" / "s")[0] == []
    assert main([str(tmp_path / "nope.jsonl")]) == 2


def read_runs_from(sweep):
    from src.run.records import load_record

    return [(0, load_record(path)) for path in sorted(sweep.glob(f"*/{RECORD_FILE}"))]


def test_unreadable_and_unfinished_lines_are_listed(tmp_path):
    runs_file = tmp_path / "runs.jsonl"
    runs_file.write_text('{"status": "running", "run_dir": "/x/a"}\nnot json\n{"status": "completed"}\n')
    written, skipped = restore(runs_file, tmp_path / "into")
    assert written == [] and len(skipped) == 3
    assert [line.split(":")[0] for line in skipped] == ["line 1", "line 2", "line 3"]
    assert [number for number, _ in read_runs(runs_file)] == [1, 2, 3]
