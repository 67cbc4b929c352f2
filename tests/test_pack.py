"""Packed runs (src/sweep/pack/): K seeds of one configuration trained as one model reproduce the K
unpacked runs: losses step by step, final parameters, norm buffers and errors, for every packable norm."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
import torch

from src.run.lifecycle import RunSpec
from src.run.records import RECORD_FILE
from src.sweep.pack import PackedNet, PackRefused, build_member, check_packable, fit_pack, train_pack
from src.training.experiment import build_experiment, fit_and_test
from src.training.process import run_settings

from .conftest import config_options, killed_at_second_epoch

# every norm whose statistics are per channel or per group, and those vmap makes exact per member
PACKABLE = [
    "bn",
    "brn",
    "frn",
    "ghost",
    "gn",
    "in",
    "ln",
    "none",
    "pixel",
    "switchable",
    "syncbn",
    "wn",
    "wn_mbn",
    "ws_gn",
]
REFUSED = ["spectral"]
SEEDS = (0, 1)
BASE = (
    "dataset=digits",
    "dataset.train_size=48",
    "dataset.augment=crop_flip",
    "batch=4",
    "epochs=2",
    "logger=none",
    "model.widths=[8,16]",
    "norm_groups=4",
    "trainer.accelerator=cpu",
    "fused_step=off",  # the per-step packed loop against the per-step unpacked one (the fused: test_fused_step.py)
)
EXTRA = {"ghost": ("norm.layer.virtual_batch=2",), "brn": ("norm.layer.warmup_steps=10",)}


def test_every_norm_is_classified():
    assert sorted(PACKABLE + REFUSED) == config_options("norm")


def member_cfgs(compose_cfg, norm: str, *extra: str) -> list[Any]:
    return [compose_cfg(*BASE, f"norm={norm}", f"seed={seed}", *EXTRA.get(norm, ()), *extra) for seed in SEEDS]


def unpacked(cfg, run_dir: Path) -> tuple[dict[str, Any], torch.nn.Module, list[float]]:
    """Train one run as src.train does; its record fields, its network and its step losses."""
    losses: list[float] = []
    with run_settings(cfg.seed):
        experiment = build_experiment(cfg, run_dir, [])
        step = experiment.module.training_step

        def recording_step(batch, batch_idx):
            loss = step(batch, batch_idx)
            losses.append(float(loss))
            return loss

        experiment.module.training_step = recording_step
        produced = fit_and_test(experiment, None, compiled=False)
    return produced, experiment.net, losses


def packed(cfgs, tmp_path: Path) -> tuple[list[dict[str, Any] | None], PackedNet, list[Any], list[list[float]]]:
    from src.sweep import pack

    built = [build_member(RunSpec(cfg, tmp_path / f"packed{cfg.seed}")) for cfg in cfgs]
    check_packable(built)
    losses: list[list[float]] = []
    original = pack.PackedClassifier.training_step

    def recording_step(self, batch, batch_idx):
        loss = original(self, batch, batch_idx)
        losses.append(self.last_losses.tolist())
        return loss

    pack.PackedClassifier.training_step = recording_step
    try:
        with run_settings(cfgs[0].seed):
            produced, diverged = fit_pack(built, tmp_path / "pack", resume=False)
    finally:
        pack.PackedClassifier.training_step = original
    assert diverged == [None] * len(cfgs)
    return produced, built, losses


@pytest.mark.parametrize("norm", PACKABLE)
def test_packed_members_reproduce_their_unpacked_runs(compose_cfg, tmp_path, norm):
    cfgs = member_cfgs(compose_cfg, norm)
    produced, built, pack_losses = packed(cfgs, tmp_path)
    assert len(pack_losses) == 2 * (48 // 4)
    for index, cfg in enumerate(cfgs):
        alone, net, losses = unpacked(cfg, tmp_path / f"alone{cfg.seed}")
        member = produced[index]
        assert [step[index] for step in pack_losses] == pytest.approx(losses, rel=1e-4, abs=1e-5), norm
        reference = net.state_dict()
        for name, value in built[index].net.state_dict().items():
            torch.testing.assert_close(value, reference[name], rtol=1e-4, atol=1e-5, msg=f"{norm}: {name}")
        for point, expected in zip(member["curve"], alone["curve"], strict=True):
            assert point["train_loss"] == pytest.approx(expected["train_loss"], rel=1e-4)
            assert point["lr"] == pytest.approx(expected["lr"])
        assert member["metrics"]["test_error"] == pytest.approx(alone["metrics"]["test_error"], abs=0.6)
        assert set(member) == set(alone)
        assert member["norm_layers"] == alone["norm_layers"]
        assert member["num_parameters"] == alone["num_parameters"]
        assert member["timing"]["train_steps"] == alone["timing"]["train_steps"]
    # the members are different runs: different seeds, different losses
    assert pack_losses[0][0] != pytest.approx(pack_losses[0][1])


@pytest.mark.parametrize("norm", REFUSED)
def test_a_norm_vmap_cannot_batch_is_refused_in_one_line(compose_cfg, tmp_path, norm):
    built = [build_member(RunSpec(cfg, tmp_path / str(cfg.seed))) for cfg in member_cfgs(compose_cfg, norm)]
    with pytest.raises(PackRefused, match=f"^norm={norm} cannot be packed: [^\n]*$"):
        check_packable(built)


def test_compile_is_refused_in_one_line_and_the_runs_train_one_by_one(compose_cfg, tmp_path):
    built = [
        build_member(RunSpec(cfg, tmp_path / str(cfg.seed))) for cfg in member_cfgs(compose_cfg, "gn", "compile=true")
    ]
    with pytest.raises(PackRefused, match=r"^compile=true: a pack compiles only through its fused step [^\n]*$"):
        check_packable(built)


def test_train_pack_writes_one_record_per_member_and_skips_completed_ones(compose_cfg, tmp_path):
    cfgs = member_cfgs(compose_cfg, "gn", "epochs=1")
    members = [RunSpec(cfg, tmp_path / "sweep" / f"seed={cfg.seed}", [f"seed={cfg.seed}"]) for cfg in cfgs]
    outcomes = train_pack(members)
    records = [json.loads((m.run_dir / RECORD_FILE).read_text()) for m in members]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert [r["seed"] for r in records] == [0, 1]
    assert records[0]["pack"]["id"] == records[1]["pack"]["id"]
    assert records[0]["pack"]["members"] == [0, 1] and records[1]["pack"]["index"] == 1
    assert [o.record["status"] for o in outcomes] == ["completed", "completed"]
    assert not (tmp_path / "sweep" / ".packs").exists() or not any((tmp_path / "sweep" / ".packs").iterdir())
    # a rerun skips both; with one record removed, it retrains only that one (alone: a pack of one)
    again = train_pack(members)
    assert all(o.record.get("skipped") for o in again)
    (members[1].run_dir / RECORD_FILE).unlink()
    third = train_pack(members)
    assert third[0].record.get("skipped") and not third[1].record.get("skipped")
    rerun = json.loads((members[1].run_dir / RECORD_FILE).read_text())
    assert rerun["status"] == "completed" and rerun["pack"] is None
    assert rerun["metrics"]["test_error"] == pytest.approx(records[1]["metrics"]["test_error"], abs=0.6)


def test_a_diverged_member_stops_alone(compose_cfg, tmp_path):
    cfgs = member_cfgs(compose_cfg, "none", "epochs=1")
    built = [build_member(RunSpec(cfg, tmp_path / str(cfg.seed))) for cfg in cfgs]
    with torch.no_grad():  # member 1 starts with a NaN weight: its loss is NaN from the first step
        built[1].net.classifier.weight[0, 0] = float("nan")
    with run_settings(0):
        produced, diverged = fit_pack(built, tmp_path / "pack", resume=False)
    assert diverged[0] is None and produced[0] is not None, diverged
    assert math.isfinite(produced[0]["metrics"]["test_error"]) and produced[0]["curve"]
    assert diverged[1].startswith("training loss is nan at step 12, epoch 0") and produced[1] is None


def interrupted_and_resumed(cfgs, tmp_path, monkeypatch):
    """The members trained whole, and trained again killed at their second epoch then resumed from the
    pack's checkpoint: (whole, resumed, the resumed fit's records)."""
    from src.sweep import pack

    whole = [build_member(RunSpec(cfg, tmp_path / f"w{cfg.seed}")) for cfg in cfgs]
    with run_settings(0):
        fit_pack(whole, tmp_path / "whole", resume=False)
    first = [build_member(RunSpec(cfg, tmp_path / f"r{cfg.seed}")) for cfg in cfgs]
    with killed_at_second_epoch(monkeypatch, pack.PackedClassifier), run_settings(0):
        fit_pack(first, tmp_path / "resumed", resume=True)
    assert (tmp_path / "resumed" / "checkpoints" / "last.ckpt").exists()
    again = [build_member(RunSpec(cfg, tmp_path / f"r{cfg.seed}")) for cfg in cfgs]
    with run_settings(0):
        produced, _ = fit_pack(again, tmp_path / "resumed", resume=True)
    assert produced[0]["timing"]["resumed_from_epoch"] == 1
    for done, resumed in zip(whole, again, strict=True):
        for name, value in done.net.state_dict().items():
            torch.testing.assert_close(resumed.net.state_dict()[name], value, msg=name)
    return whole, again, produced


def test_an_interrupted_pack_resumes_from_its_checkpoint_exactly(compose_cfg, tmp_path, monkeypatch):
    interrupted_and_resumed(member_cfgs(compose_cfg, "bn"), tmp_path, monkeypatch)


def test_a_packed_sweep_writes_every_record_and_its_rerun_skips_them(tmp_path):
    from .conftest import run_train

    sweep = tmp_path / "multirun"
    args = [
        "-m",
        "hydra/launcher=packed",
        "hydra.launcher.size=2",  # whatever the batch: size auto would not pack above batch 2 on a CPU
        f"hydra.sweep.dir={sweep}",
        "norm=gn",
        "seed=0,1",
        *[item for item in BASE if not item.startswith("dataset.augment")],
        "epochs=1",
    ]
    done = run_train(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    paths = sorted(sweep.glob(f"*/{RECORD_FILE}"))
    records = [json.loads(p.read_text()) for p in paths]
    assert [r["seed"] for r in records] == [0, 1] and {r["status"] for r in records} == {"completed"}
    assert records[0]["pack"]["id"] == records[1]["pack"]["id"] and records[0]["pack"]["size"] == 2
    assert records[0]["launch"]["multirun"] is True
    # each member's [k/N] line comes once the pack has trained it, with its own test error
    lines = [line for line in done.stdout.splitlines() if re.match(r"\[\d/2\]", line)]
    errors = [f"{r['metrics']['test_error']:.2f}%" for r in records]
    assert [line.split(";")[0].split(": ")[1].split(" (")[0] for line in lines] == [f"completed {e}" for e in errors]
    stamps = [p.stat().st_mtime_ns for p in paths]
    rerun = run_train(*args, cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    assert [p.stat().st_mtime_ns for p in paths] == stamps  # skipped: nothing rewritten
    lines = [line for line in rerun.stdout.splitlines() if re.match(r"\[\d/2\]", line)]
    assert len(lines) == 2 and all(": skipped " in line for line in lines), rerun.stdout[-2000:]


def test_packs_train_in_parallel_worker_processes(tmp_path):
    from .conftest import run_train

    sweep = tmp_path / "multirun"
    args = [
        "-m",
        "hydra/launcher=packed",
        "hydra.launcher.n_jobs=2",
        "hydra.launcher.size=2",
        f"hydra.sweep.dir={sweep}",
        "norm=bn,gn",
        "seed=0,1",
        *[item for item in BASE if not item.startswith(("dataset.augment", "logger"))],
        "logger=csv",
        "epochs=1",
    ]
    done = run_train(*args, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 packs and lone runs, 2 at a time" in done.stdout + done.stderr
    records = [json.loads(p.read_text()) for p in sorted(sweep.glob(f"*/{RECORD_FILE}"))]
    assert len(records) == 4 and {r["status"] for r in records} == {"completed"}
    packs = {r["norm"]: set() for r in records}
    for record in records:
        packs[record["norm"]].add(record["pack"]["id"])
    assert all(len(ids) == 1 for ids in packs.values()) and packs["bn"] != packs["gn"]
    processes = {r["norm"]: r["pack"]["process"] for r in records}
    assert processes["bn"] != processes["gn"]  # two worker processes, one pack each
    from src.report.curves import read_curve

    for record in records:  # each member's CSV logger file, as an unpacked run's
        curve = read_curve(record["run_dir"])
        assert curve["val_error"].tolist() == [point["val_error"] for point in record["curve"]]


def test_a_bad_n_jobs_fails_in_one_line():
    from src.sweep.launcher import PackedLauncher

    with pytest.raises(ValueError, match=r"^hydra.launcher.n_jobs=0: must be an integer ≥ 1$"):
        PackedLauncher(n_jobs=0)


def test_auto_pack_sizes_follow_the_measured_table():
    from src.sweep.launcher import default_pack_size

    assert [default_pack_size("cpu", b) for b in (1, 2, 4, 32)] == [8, 8, 1, 1]
    assert [default_pack_size("cuda", b) for b in (2, 32, 64)] == [8, 8, 1]


def test_a_packed_member_writes_the_metrics_csv_of_its_csv_logger(tmp_path):
    from src.report.curves import read_curve
    from src.sweep.pack import write_member_metrics

    curve = [
        {"epoch": 0, "train_loss": 2.0, "val_error": 60.0, "lr": 0.1},
        {"epoch": 1, "train_loss": 1.5, "val_error": 50.0, "lr": 0.0},
    ]
    write_member_metrics(tmp_path, curve, 48.5)
    read = read_curve(tmp_path)
    assert read["val_error"].tolist() == [60.0, 50.0] and read["train_loss"].tolist() == [2.0, 1.5]
    raw = (tmp_path / "metrics.csv").read_text().splitlines()
    assert raw[0] == "epoch,train/loss,val/error,lr,test/error" and raw[-1] == "1,,,,48.5"
