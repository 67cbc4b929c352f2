"""make gpu-study: a study in a device budget, bundled for the way back and restored anywhere (issue 31)."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from src.gpu_study import run_until, sweep_command
from src.restore import main as restore_main
from src.run.bundle import BundleError, bundle, unbundle
from tests.conftest import ROOT


def small_sweep(tmp_path: Path) -> Path:
    """A sweep directory with a record, a 10,240-byte pack checkpoint and a file bundles leave out."""
    sweep = tmp_path / "multirun" / "study"
    (sweep / "seed=0").mkdir(parents=True)
    (sweep / "seed=0" / "result.json").write_text('{"status": "running"}')
    checkpoint = sweep / ".packs" / "pack-1" / "checkpoints" / "last.ckpt"
    checkpoint.parent.mkdir(parents=True)
    checkpoint.write_bytes(bytes(range(256)) * 40)
    (sweep / "seed=0" / "other.bin").write_bytes(b"not bundled")
    return sweep


def small_bundle(tmp_path: Path) -> Path:
    bundle(small_sweep(tmp_path), tmp_path / "study.tar.gz", part_bytes=4096)
    return tmp_path / "study.tar.gz"


def test_a_bundle_cuts_large_files_into_parts_and_restores_them_whole(tmp_path: Path) -> None:
    sweep = small_sweep(tmp_path)
    checkpoint = sweep / ".packs" / "pack-1" / "checkpoints" / "last.ckpt"
    names = bundle(sweep, tmp_path / "study.tar.gz", part_bytes=4096)
    assert "study/.packs/pack-1/checkpoints/last.ckpt.part002" in names and "study/seed=0/result.json" in names
    assert not any(n.endswith("other.bin") for n in names)
    with tarfile.open(tmp_path / "study.tar.gz") as tar:
        assert max(m.size for m in tar.getmembers()) <= 4096
    into = tmp_path / "elsewhere"
    written, skipped = unbundle(tmp_path / "study.tar.gz", into)
    assert (into / "study" / ".packs" / "pack-1" / "checkpoints" / "last.ckpt").read_bytes() == checkpoint.read_bytes()
    assert (into / "study" / "seed=0" / "result.json").exists() and not skipped
    again, skipped = unbundle(tmp_path / "study.tar.gz", into)  # nothing is overwritten
    assert again == [] and len(skipped) == len(written)
    assert not list(sweep.rglob("*.part*"))  # parts are made in memory, not in the sweep directory


def test_a_truncated_bundle_restores_nothing_and_says_so_in_one_line(tmp_path: Path, capsys) -> None:
    archive = small_bundle(tmp_path)
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    into = tmp_path / "elsewhere"
    with pytest.raises(BundleError, match="cannot be read whole"):
        unbundle(archive, into)
    assert not into.exists()
    assert restore_main([str(archive), "--into", str(into)]) == 2
    error = capsys.readouterr().err
    assert error.startswith(f"error: {archive} cannot be read whole") and error.count("\n") == 1
    assert "nothing was restored" in error and not into.exists()
    (tmp_path / "junk.tar.gz").write_text("not a tarball")
    assert restore_main([str(tmp_path / "junk.tar.gz"), "--into", str(into)]) == 2 and not into.exists()


def test_a_bundle_with_a_part_missing_restores_nothing(tmp_path: Path) -> None:
    archive = small_bundle(tmp_path)
    gapped = tmp_path / "gapped.tar.gz"
    with tarfile.open(archive) as source, tarfile.open(gapped, "w:gz") as target:
        for member in source:
            if not member.name.endswith(".part001"):
                target.addfile(member, source.extractfile(member))
    with pytest.raises(BundleError, match=r"last.ckpt has parts \[0, 2\], not 0 to 1"):
        unbundle(gapped, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()


def test_the_summary_counts_the_runs_a_stopped_sweep_never_started(tmp_path: Path) -> None:
    from src.gpu_study import summarize

    sweep = tmp_path / "multirun" / "study"
    for seed, status in ((0, "completed"), (1, "running")):
        (sweep / f"seed={seed}").mkdir(parents=True)
        (sweep / f"seed={seed}" / "result.json").write_text(json.dumps({"status": status}))
    groups = [  # two cells of 4 runs, packs of 2 estimated at 10 s each, probed in 3 s and (shared) 0 s
        {"cell": "norm=bn", "runs": 4, "size": 2, "packs": 2, "pack_seconds": 10.0, "probe_seconds": 3.0},
        {"cell": "norm=gn", "runs": 4, "size": 2, "packs": 2, "pack_seconds": 10.0, "probe_seconds": 0.0},
    ]
    (sweep / "launch_plan.json").write_text(json.dumps({"n_jobs": 2, "groups": groups}))
    summary = summarize(sweep, stopped=True, command=["-m", "src.train"], budget_s=60.0, seconds=59.0)
    counts = [summary[key] for key in ("runs", "runs_completed", "runs_left", "runs_not_started")]
    assert counts == [8, 1, 7, 6]
    assert summary["estimated_total_s"] == 20.0 and summary["estimated_rest_s"] == 17.5  # 40 s / 2 jobs × 7/8
    assert summary["probe_seconds"] == 3.0


def test_the_sweep_stops_at_the_budget(tmp_path: Path) -> None:
    status, stopped = run_until(["-c", "import time; time.sleep(120)"], 1.0, tmp_path / "log")
    assert stopped and status is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["demo", "--budget-s", "-5"], "--budget-s=-5: it must exceed 30"),
        (["demo", "--budget-s", "30"], "--budget-s=30: it must exceed 30"),
        (["demo", "--n-jobs", "0"], "--n-jobs=0: it must be an integer >= 1"),
        (["nosuch"], "study=nosuch: no conf/experiment/nosuch.yaml"),
    ],
)
def test_a_visit_with_a_bad_argument_fails_before_it_trains(tmp_path: Path, capsys, args, message) -> None:
    """A device visit's minutes are few: nothing starts, nothing is written."""
    from src.gpu_study import main

    with pytest.raises(SystemExit) as stopped:
        main([*args, "--out", str(tmp_path / "visit"), "--cpu"])
    assert stopped.value.code == 2 and message in capsys.readouterr().err and not (tmp_path / "visit").exists()


def test_the_sweep_is_the_same_runs_on_any_device() -> None:
    """Only steering keys name the device, so a run's directory and hash are those of a CPU run."""
    gpu = sweep_command("demo", Path("multirun/demo"), cpu=False, n_jobs=2, overrides=[])
    assert "trainer.accelerator=auto" in gpu and not any(a.startswith("trainer=") for a in gpu)
    assert {"fused_step=auto", "hydra/launcher=packed", "hydra.launcher.size=probe"} <= set(gpu)


@pytest.mark.slow  # trains a small sweep: make test-all
def test_the_cpu_rehearsal_trains_bundles_and_a_restored_sweep_skips_what_it_did(tmp_path: Path) -> None:
    out = tmp_path / "visit"
    args = ["demo", "--out", str(out), "--budget-s", "400", "--cpu", "--n-jobs", "1"]
    overrides = ["fused_step=eager", "epochs=1", "norm=gn", "batch=32", "seed=0,1"]
    done = subprocess.run(
        [sys.executable, "-m", "src.gpu_study", *args, *overrides],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["runs_completed"] == 2 and summary["runs_left"] == 0 and not summary["stopped_at_budget"]
    plan = json.loads((out / "multirun" / "demo" / "launch_plan.json").read_text())
    assert plan["groups"][0]["size"] in (1, 2) and plan["groups"][0]["probe"]
    into = tmp_path / "multirun"
    unbundle(out / "demo.tar.gz", into)
    records = sorted(into.rglob("result.json"))
    assert len(records) == 2 and all(json.loads(p.read_text())["status"] == "completed" for p in records)
