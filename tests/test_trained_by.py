"""A run resumed from a checkpoint names every commit that trained it (timing.trained_by), not only the
last one's; the report's commit column says so."""

from __future__ import annotations

import socket

import torch

from src.report.load import flatten
from src.run.lifecycle import RunSpec
from src.run.records import RunRecord
from src.sweep import pack
from src.sweep.pack import build_member, fit_pack
from src.training import module
from src.training.process import run_settings
from src.training.single import train

from .conftest import killed_at_second_epoch
from .test_pack import member_cfgs

BASE = ("dataset=digits", "epochs=2", "logger=none", "trainer.accelerator=cpu")


def test_a_run_resumed_under_another_commit_names_both(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_COMMIT", "aaaaaaaaaaaa")
    with killed_at_second_epoch(monkeypatch, module.Classifier):
        train(compose_cfg(*BASE), tmp_path / "run")
    monkeypatch.setenv("NORMLAB_COMMIT", "bbbbbbbbbbbb")
    record = train(compose_cfg(*BASE), tmp_path / "run")
    host = socket.gethostname()
    assert record["status"] == "completed" and record["environment"]["git_commit"] == "bbbbbbbbbbbb"
    assert record["timing"]["trained_by"] == [
        {"from_epoch": 0, "git_commit": "aaaaaaaaaaaa", "hostname": host},
        {"from_epoch": 1, "git_commit": "bbbbbbbbbbbb", "hostname": host},
    ]
    row = flatten(RunRecord.from_dict(record), "run")
    assert row["git_commit"] == "aaaaaaaaaaaa then bbbbbbbbbbbb"


def test_a_run_trained_at_once_has_no_segments_and_one_commit(compose_cfg, tmp_path, monkeypatch):
    monkeypatch.setenv("NORMLAB_COMMIT", "cccccccccccc")
    record = train(compose_cfg(*BASE), tmp_path / "run")
    assert "trained_by" not in record["timing"]
    assert flatten(RunRecord.from_dict(record), "run")["git_commit"] == "cccccccccccc"


def test_a_checkpoint_that_does_not_say_who_trained_it_gives_an_unknown_first_segment(
    compose_cfg, tmp_path, monkeypatch
):
    monkeypatch.setenv("NORMLAB_COMMIT", "aaaaaaaaaaaa")
    with killed_at_second_epoch(monkeypatch, module.Classifier):
        train(compose_cfg(*BASE), tmp_path / "run")
    path = tmp_path / "run" / "checkpoints" / "last.ckpt"
    checkpoint = torch.load(path, weights_only=False)
    checkpoint["callbacks"] = {k: v for k, v in checkpoint["callbacks"].items() if "TrainedBy" not in k}
    torch.save(checkpoint, path)  # as a checkpoint written before TrainedBy existed
    record = train(compose_cfg(*BASE), tmp_path / "run")
    first, second = record["timing"]["trained_by"]
    assert first == {"from_epoch": 0, "git_commit": None, "hostname": None} and second["from_epoch"] == 1
    assert flatten(RunRecord.from_dict(record), "run")["git_commit"] == "unknown then aaaaaaaaaaaa"


def test_a_resumed_pack_names_the_commit_of_each_segment(compose_cfg, tmp_path, monkeypatch):
    cfgs = member_cfgs(compose_cfg, "gn", "epochs=2")
    monkeypatch.setenv("NORMLAB_COMMIT", "aaaaaaaaaaaa")
    first = [build_member(RunSpec(cfg, tmp_path / f"r{cfg.seed}")) for cfg in cfgs]
    with killed_at_second_epoch(monkeypatch, pack.PackedClassifier), run_settings(0):
        fit_pack(first, tmp_path / "pack", resume=True)
    monkeypatch.setenv("NORMLAB_COMMIT", "bbbbbbbbbbbb")
    again = [build_member(RunSpec(cfg, tmp_path / f"r{cfg.seed}")) for cfg in cfgs]
    with run_settings(0):
        produced, _ = fit_pack(again, tmp_path / "pack", resume=True)
    for fields in produced:
        segments = fields["timing"]["trained_by"]
        assert [(s["from_epoch"], s["git_commit"]) for s in segments] == [(0, "aaaaaaaaaaaa"), (1, "bbbbbbbbbbbb")]
