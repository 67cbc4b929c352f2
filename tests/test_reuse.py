"""Runs reused across studies (``reuse_from``, src/run/reuse.py): a job whose computation another sweep
completed copies that run instead of training it, under its own identity and saying where it came from."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pandas as pd
import pytest

from src.report.load import flatten
from src.report.markdown import provenance
from src.run import lifecycle
from src.run.lifecycle import RunSpec
from src.run.records import RECORD_FILE, RunRecord, read_record, write_record
from src.run.reuse import find_completed
from src.sweep.pack import train_pack
from src.sweep.progress import SweepProgress, job_event
from src.training.single import train
from src.training.validation import ConfigError, validate_config

FAST = ("dataset=digits", "model.widths=[8,16]", "logger=none", "trainer.accelerator=cpu", "epochs=1", "batch=16")


def never_fit(record, resume_from):
    raise AssertionError("a reused run must not train")


@pytest.fixture
def source(compose_cfg, tmp_path) -> Path:
    """A sweep directory of study "first" with one completed run (seed 0), plus files a job leaves."""
    run_dir = tmp_path / "first" / "seed=0"
    train(compose_cfg(*FAST, "study=first"), run_dir, overrides=["seed=0"])
    (run_dir / "train.log").write_text("the source's log\n")
    (run_dir / "checkpoints").mkdir()
    (run_dir / "checkpoints" / "last.ckpt").write_text("not copied")
    (run_dir / "result.0123456789abcdef.json").write_text("{}")  # an older record of the source's own directory
    return tmp_path / "first"


def test_a_run_another_study_completed_is_copied_not_trained(compose_cfg, source, tmp_path):
    original = read_record(source / "seed=0" / RECORD_FILE)
    cfg = compose_cfg(*FAST, "study=second", f"reuse_from=[{source}]")
    run_dir = tmp_path / "second" / "seed=0"
    returned = lifecycle.run(RunSpec(cfg, run_dir, ["seed=0"], launch={"multirun": True}), never_fit)
    assert returned["skipped"] is True
    copied = read_record(run_dir / RECORD_FILE)
    # the job's identity and config; the training's facts unchanged; the source named
    assert copied["study"] == "second" and copied["run_dir"] == str(run_dir) and copied["launch"] == {"multirun": True}
    assert copied["config"]["study"] == "second" and copied["config_hash"] == original["config_hash"]
    for key in ("metrics", "curve", "timing", "started_at", "finished_at", "environment", "seed", "norm", "status"):
        assert copied[key] == original[key], key
    assert copied["reused_from"]["run_dir"] == str(source / "seed=0")
    assert copied["reused_from"]["study"] == "first" and copied["reused_from"]["at"]
    assert (run_dir / "train.log").read_text() == "the source's log\n"
    assert not (run_dir / "checkpoints").exists() and not list(run_dir.glob("result.*.json"))
    # a rerun is an ordinary skip of the copied record: nothing rewritten
    stamp = (run_dir / RECORD_FILE).stat().st_mtime_ns
    again = lifecycle.run(RunSpec(cfg, run_dir, ["seed=0"]), never_fit)
    assert again["skipped"] is True and (run_dir / RECORD_FILE).stat().st_mtime_ns == stamp


def test_another_computation_or_force_trains(compose_cfg, source, tmp_path):
    called = []

    def fit(record, resume_from):
        called.append(record.seed)
        return {}

    other = compose_cfg(*FAST, "study=second", "seed=1", f"reuse_from=[{source}]")
    lifecycle.run(RunSpec(other, tmp_path / "second" / "seed=1"), fit)
    forced = compose_cfg(*FAST, "study=second", "force=true", f"reuse_from=[{source}]")
    lifecycle.run(RunSpec(forced, tmp_path / "second" / "seed=0"), fit)
    assert called == [1, 0]
    assert read_record(tmp_path / "second" / "seed=0" / RECORD_FILE)["reused_from"] is None


def test_only_a_completed_record_of_the_same_hash_is_found(source, tmp_path):
    found = source / "seed=0"
    digest = read_record(found / RECORD_FILE)["config_hash"]
    assert find_completed([source], digest) == found
    assert find_completed([source], digest, exclude=found) is None  # never the job's own directory
    assert find_completed([source], "0" * 16) is None
    # running, failed or unreadable records in other directories are passed over
    record = RunRecord.from_dict(read_record(found / RECORD_FILE))
    for name, status in (("a_running", "running"), ("b_failed", "failed")):
        record.status = status
        write_record(source / name, record)
    (source / "0_broken").mkdir()
    (source / "0_broken" / RECORD_FILE).write_text("{not json")
    assert find_completed([tmp_path / "empty", source], digest) == found


def test_a_pack_of_reused_members_trains_nothing(compose_cfg, source, tmp_path):
    train(compose_cfg(*FAST, "study=first", "seed=1"), source / "seed=1", overrides=["seed=1"])
    members = [
        RunSpec(
            compose_cfg(*FAST, "study=second", f"seed={seed}", f"reuse_from=[{source}]"),
            tmp_path / "second" / f"seed={seed}",
            [f"seed={seed}"],
        )
        for seed in (0, 1)
    ]
    outcomes = train_pack(members)
    assert all(o.record.get("skipped") for o in outcomes)
    records = [read_record(m.run_dir / RECORD_FILE) for m in members]
    assert [r["reused_from"]["run_dir"] for r in records] == [str(source / "seed=0"), str(source / "seed=1")]
    assert not (tmp_path / "second" / ".packs").exists()


def test_a_missing_reuse_directory_fails_in_one_line(compose_cfg):
    with pytest.raises(ConfigError) as error:
        validate_config(compose_cfg(*FAST, "reuse_from=[multirun/no_such_study]"))
    message = str(error.value)
    assert message.startswith("reuse_from[0]='multirun/no_such_study' is invalid: not a directory")
    assert "\n" not in message


def test_the_sweep_line_and_the_report_say_reused(compose_cfg, source, tmp_path):
    started = time.time() - 1
    cfg = compose_cfg(*FAST, "study=second", f"reuse_from=[{source}]")
    run_dir = tmp_path / "second" / "seed=0"
    lifecycle.run(RunSpec(cfg, run_dir, ["seed=0"]), never_fit)
    event = job_event(run_dir, "seed=0", started, started, False)
    assert event["status"] == "reused"
    line = SweepProgress(tmp_path / "second", 2, started).add(event)
    assert re.search(r": reused [\d.]+% .*; 0 skipped, 1 reused, 0 failed, 1 left$", line), line
    rows = [flatten(RunRecord.from_dict(read_record(p)), str(p.parent)) for p in (run_dir / RECORD_FILE,)]
    rows.append(flatten(RunRecord.from_dict(read_record(source / "seed=0" / RECORD_FILE)), "x"))
    context = {"command": "c", "commit": "abc", "machine": "m", "written_at": "now"}
    text = provenance(pd.DataFrame(rows), context)
    assert "- reused: 1 from first (the same computation, trained for that study" in text
    assert "reused" not in provenance(pd.DataFrame(rows[1:]), context)


@pytest.mark.slow
def test_a_sweep_reuses_what_another_study_completed(tmp_path):
    """The command a user types: a second study's sweep copies the runs the first completed and trains the rest."""
    from .conftest import run_train

    args = ["-m", "hydra/launcher=packed", "hydra.launcher.size=2", *FAST]
    first = run_train(*args, "study=first", "seed=0,1", cwd=tmp_path)
    assert first.returncode == 0, first.stderr[-2000:]
    second = run_train(*args, "study=second", "seed=0,1,2", "reuse_from=[multirun/first]", cwd=tmp_path)
    assert second.returncode == 0, second.stderr[-2000:]
    lines = [line for line in second.stdout.splitlines() if re.match(r"\[\d/3\]", line)]
    assert sorted(line.split(": ")[1].split(" ")[0] for line in lines) == ["completed", "reused", "reused"], lines
    records = [json.loads(p.read_text()) for p in sorted((tmp_path / "multirun" / "second").glob(f"*/{RECORD_FILE}"))]
    assert [r["study"] for r in records] == ["second"] * 3
    assert [bool(r["reused_from"]) for r in records] == [True, True, False]
    bad = run_train(*args, "study=third", "seed=0", "reuse_from=[multirun/nothing]", cwd=tmp_path)
    assert bad.returncode == 2 and "reuse_from[0]='multirun/nothing' is invalid" in bad.stderr
    assert not (tmp_path / "multirun" / "third").exists()
