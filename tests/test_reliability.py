"""Sweeps survive kills, crashes and bad input: resume, skip, failure records, clear errors, no secrets."""

from __future__ import annotations

import errno
import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from src.report.load import load_runs
from src.run.records import RECORD_FILE
from src.run.resume import RunLocked, run_lock
from src.training.single import train

from .conftest import DATA, PYTHON, ROOT, run_train

FAST = ("dataset=digits", "model.widths=[8,16]", "logger=none", "trainer.accelerator=cpu")


def read(path: Path) -> dict:
    return json.loads(path.read_text())


# ------------------------------------------------------------------------------------------- resume
def test_a_completed_config_is_skipped_and_force_retrains(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST, "epochs=1", "batch=16")
    first = train(cfg, tmp_path)
    before = (tmp_path / RECORD_FILE).read_bytes()
    again = train(cfg, tmp_path)
    assert again["skipped"] and again["metrics"] == first["metrics"]
    assert (tmp_path / RECORD_FILE).read_bytes() == before
    assert not (tmp_path / "checkpoints").exists()  # completed runs keep no checkpoint
    forced = train(compose_cfg(*FAST, "epochs=1", "batch=16", "force=true"), tmp_path)
    assert "skipped" not in forced and read(tmp_path / RECORD_FILE)["started_at"] >= first["started_at"]
    assert (tmp_path / f"result.{first['config_hash']}.json").read_bytes() == before  # the old record kept


def test_a_locked_run_directory_is_not_trained_twice(compose_cfg, tmp_path):
    with run_lock(tmp_path), pytest.raises(RunLocked, match=rf"another process \(host \S+ pid {os.getpid()}\)"):
        train(compose_cfg(*FAST, "epochs=1"), tmp_path)


def start_sweep(args: tuple[str, ...], cwd: Path) -> subprocess.Popen:
    """``python -m src.train <args>`` in its own process group (so a test can SIGKILL all of it)."""
    return subprocess.Popen(
        [PYTHON, "-m", "src.train", *args],
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


@pytest.mark.slow  # make test-all (idle 2-core CPU: 10-35 s)
def test_sigkill_mid_sweep_then_rerun_skips_completed_and_resumes_the_interrupted(tmp_path):
    sweep = tmp_path / "multirun"
    args = ("-m", "norm=bn,gn,ln", "batch=8,16", *FAST, "epochs=6", f"hydra.sweep.dir={sweep}")
    process = start_sweep(args, tmp_path)
    interrupted = None
    deadline = time.time() + 600  # generous: on a loaded 2-core machine the sweep is slow
    while time.time() < deadline and process.poll() is None:
        completed = [p for p in sweep.glob(f"*/{RECORD_FILE}") if '"completed"' in p.read_text()]
        training = [p.parent.parent for p in sweep.glob("*/checkpoints/last.ckpt")]
        if len(completed) >= 2 and training:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            interrupted = training[0]
            break
        time.sleep(0.05)
    assert interrupted is not None, "the sweep ended before it could be killed mid-training"
    done_before = {p: p.read_bytes() for p in sweep.glob(f"*/{RECORD_FILE}") if '"completed"' in p.read_text()}
    assert read(interrupted / RECORD_FILE)["status"] == "running"

    rerun = run_train(*args, cwd=tmp_path, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = {p.parent: read(p) for p in sweep.glob(f"*/{RECORD_FILE}")}
    assert len(records) == 6 and all(r["status"] == "completed" for r in records.values())
    for path, content in done_before.items():
        assert path.read_bytes() == content  # not retrained
    resumed = records[interrupted]["timing"]
    assert resumed["resumed_from_epoch"] >= 1 and resumed["epochs_completed"] == 6
    assert records[interrupted]["timing"]["train_steps"] == 6 * (1293 // int(records[interrupted]["batch"]))
    runs = load_runs([sweep])
    skipped = runs.attrs["not_counted"]
    assert len(runs) == 6 and not skipped
    assert runs.groupby(["norm", "batch"]).size().max() == 1


@pytest.mark.slow  # about 70 s on 2 idle cores: make test-all
def test_sigkill_mid_packed_sweep_then_rerun_resumes_the_pack_and_loses_nothing(tmp_path):
    sweep = tmp_path / "multirun"
    args = (
        "-m",
        "hydra/launcher=packed",
        "hydra.launcher.size=2",
        "norm=bn",
        "seed=0,1",
        "batch=16",
        *FAST,
        "epochs=3",
        f"hydra.sweep.dir={sweep}",
    )
    process = start_sweep(args, tmp_path)
    killed = False
    deadline = time.time() + 600
    while time.time() < deadline and process.poll() is None:
        if list(sweep.glob(".packs/*/checkpoints/last.ckpt")):  # the pack has finished an epoch
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            killed = True
            break
        time.sleep(0.05)
    assert killed, "the packed sweep ended before it could be killed mid-training"
    assert {read(p)["status"] for p in sweep.glob(f"*/{RECORD_FILE}")} == {"running"}

    rerun = run_train(*args, cwd=tmp_path, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-2000:]
    records = [read(p) for p in sorted(sweep.glob(f"*/{RECORD_FILE}"))]
    assert [r["seed"] for r in records] == [0, 1] and {r["status"] for r in records} == {"completed"}
    assert records[0]["pack"]["id"] == records[1]["pack"]["id"]
    for record in records:
        timing = record["timing"]
        assert timing["resumed_from_epoch"] >= 1 and timing["epochs_completed"] == 3
        assert [point["epoch"] for point in record["curve"]] == list(range(3))  # no epoch lost or repeated
    assert not (sweep / ".packs").exists()  # a finished pack keeps no checkpoint


# ------------------------------------------------------------------------- failures never kill a sweep
def test_one_failed_and_one_diverged_run_do_not_stop_the_sweep(tmp_path):
    sweep = tmp_path / "multirun"
    result = run_train(
        "-m",
        *FAST,
        "epochs=2",
        "norm=gn",
        "+callbacks.boom._target_=tests.failing_callback.FailAtTrainStart",
        "+callbacks.boom.seed=${seed}",
        "+callbacks.boom.fail_seed=1",
        "seed=0,1",
        "optim.base_lr=0.1,1e9",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 1
    records = [read(p) for p in sweep.glob(f"*/{RECORD_FILE}")]
    status = {(r["seed"], r["config"]["optim"]["base_lr"]): r["status"] for r in records}
    assert status == {(0, 0.1): "completed", (0, 1e9): "diverged", (1, 0.1): "failed", (1, 1e9): "failed"}
    assert "3 run(s) of this sweep did not complete" in result.stderr
    failed = read(next(p for p in sweep.glob(f"*seed=1*/{RECORD_FILE}")))
    assert "boom: this run was made to fail" in failed["error"] and "Traceback" in failed["traceback"]
    log = next(p for p in sweep.glob("*seed=1*/train.log")).read_text()
    assert "Traceback" in log and "boom" in log
    diverged = next(r for r in records if r["status"] == "diverged")
    assert "training loss is" in diverged["error"]
    runs = load_runs([sweep])
    skipped = runs.attrs["not_counted"]
    assert len(runs) == 1 and len(skipped) == 3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (["norm=gn", "norm.layer.min_group_size=1", "norm.layer.groups=1,3"], "norm.layer.groups=3 gives 3 groups"),
        (["dataset.augment=none,bogus"], "dataset.augment='bogus' is invalid: choose one of"),
        (["batch=8,5000"], "batch=5000 is larger than the training split"),
    ],
    ids=["gn_groups", "augment", "batch_over_split"],
)
def test_a_sweep_with_a_value_only_a_class_can_judge_fails_before_its_first_job(values, message, tmp_path):
    """The class checks (a dataset's, a norm's against the model's channels) run for every job before the
    first starts: one line naming the job, exit 2, and no run directory, where a sweep used to write a
    failed run for each bad job."""
    sweep = tmp_path / "multirun"
    result = run_train("-m", *FAST, "epochs=1", *values, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and message in lines[0] and "(job #1: " in lines[0], result.stderr[-2000:]
    assert lines[0].endswith("; nothing was trained")
    assert not sweep.exists() or not any(sweep.iterdir())


# ------------------------------------------------------------------------------ bad input fails early
def bad_npz(kind: str, tmp_path: Path) -> str:
    """The vendored tiny MNIST with one defect."""
    with np.load(DATA / "mnist_tiny.npz") as d:
        arrays = {key: d[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    y, x = arrays["y_train"], arrays["x_train"]
    defects = {
        "npz_missing_keys": {"y_test": None},
        "npz_mismatched_lengths": {"y_train": y[:-5]},
        "npz_labels_out_of_range": {"y_train": np.where(y == 3, -1, y)},
        "npz_non_image_dtype": {"x_train": x.astype(np.float32)},
    }
    arrays.update(defects[kind])
    path = tmp_path / f"{kind}.npz"
    np.savez(path, **{key: value for key, value in arrays.items() if value is not None})
    return str(path)


def image_folder(kind: str, tmp_path: Path) -> str:
    root = tmp_path / kind
    for split in ("train", "test"):
        folder = root / split / "only_class"
        folder.mkdir(parents=True)
        if kind == "folder_single_class":
            Image.new("L", (8, 8)).save(folder / "0.png")
    return str(root)


BAD_INPUTS = {
    "unknown_norm": (["norm=nope"], "Could not find 'norm/nope'"),
    "unknown_model": (["model=nope"], "Could not find 'model/nope'"),
    "unknown_dataset": (["dataset=nope"], "Could not find 'dataset/nope'"),
    "batch_zero": (["batch=0"], "batch=0 is invalid: it must be an integer >= 1"),
    "batch_not_integer": (["batch=2.5"], "batch=2.5 is invalid: it must be an integer >= 1"),
    "batch_larger_than_train": (["batch=5000"], "batch=5000 is larger than the training split"),
    "gn_groups_not_dividing": (
        ["norm=gn", "norm.layer.groups=3", "norm.layer.min_group_size=1"],
        "norm.layer.groups=3",
    ),
    "lr_not_positive": (["optim.base_lr=0"], "optim.base_lr=0 is invalid: it must be a finite number > 0"),
    "epochs_not_positive": (["epochs=0"], "epochs=0 is invalid: it must be an integer >= 1"),
    "val_split_too_large": (["dataset.val_size=2000"], "dataset.val_size=2000 gives 2000 validation images"),
    "npz_missing_keys": (["dataset=npz"], "missing keys ['y_test']"),
    "npz_mismatched_lengths": (["dataset=npz"], "y_train has shape (995,) but there are 1000 images"),
    "npz_labels_out_of_range": (["dataset=npz"], "y_train has labels outside 0..9"),
    "npz_non_image_dtype": (["dataset=npz"], "x_train has dtype float32; images must be uint8"),
    "folder_without_images": (["dataset=image_folder"], "no images under train/<class>/"),
    "folder_single_class": (["dataset=image_folder"], "train/ has a single class"),
    "dataset_file_missing": (
        ["dataset=npz", "dataset.path=/nowhere/x.npz"],
        "dataset.path=/nowhere/x.npz: not found (looked in",
    ),
    "torchvision_missing": (["dataset=cifar10"], "needs torchvision, which is not installed"),
    "bn_batch_one_on_1x1_maps": (["batch=1", "model.widths=[8,8,8,8]"], "BN needs more than one value per channel"),
    "unknown_override_key": (["batchsize=4"], "Could not override 'batchsize'"),
}


# One case of each kind runs in `make test` (a missing config group, a bad value, a norm that cannot be
# built, a bad dataset file, a missing file, an unknown key); every case runs in `make test-all`.
FAST_BAD_INPUTS = {
    "unknown_norm",
    "batch_zero",
    "gn_groups_not_dividing",
    "npz_missing_keys",
    "dataset_file_missing",
    "unknown_override_key",
}


@pytest.mark.parametrize(
    "case",
    [case if case in FAST_BAD_INPUTS else pytest.param(case, marks=pytest.mark.slow) for case in sorted(BAD_INPUTS)],
)
def test_bad_input_fails_before_training_with_one_clear_line(case, tmp_path):
    overrides, message = BAD_INPUTS[case]
    overrides = list(overrides)
    if case.startswith("npz_"):
        overrides.append(f"dataset.path={bad_npz(case, tmp_path)}")
    if case.startswith("folder_"):
        overrides.append(f"dataset.path={image_folder(case, tmp_path)}")
    if case == "torchvision_missing" and importlib.util.find_spec("torchvision"):
        pytest.skip("torchvision is installed")
    if case not in ("unknown_dataset", "npz_missing_keys") and not any(o.startswith("dataset=") for o in overrides):
        overrides.append("dataset=digits")
    result = run_train(
        *overrides, "logger=none", "epochs=1" if case != "epochs_not_positive" else "seed=0", cwd=tmp_path
    )
    output = result.stdout + result.stderr
    assert result.returncode != 0
    lines = [line for line in output.splitlines() if message in line]
    assert lines, output[-3000:]
    assert "epoch 1/" not in output  # nothing trained
    assert not list(tmp_path.rglob(RECORD_FILE))  # and nothing recorded: it failed before its run started
    assert not (tmp_path / "results").exists()


# ---------------------------------------------------------------------- determinism, disks, secrets
def test_same_config_and_seed_give_identical_metrics_on_cpu(compose_cfg, tmp_path):
    cfg = compose_cfg(*FAST, "epochs=2", "batch=8", "norm=bn")
    first = train(cfg, tmp_path / "a")
    second = train(cfg, tmp_path / "b")
    assert first["metrics"] == second["metrics"]
    other = train(compose_cfg(*FAST, "epochs=2", "batch=8", "norm=bn", "seed=1"), tmp_path / "c")
    assert other["metrics"] != first["metrics"]


def test_a_full_disk_fails_the_run_clearly_and_keeps_earlier_results(compose_cfg, tmp_path, monkeypatch):
    earlier = train(compose_cfg(*FAST, "epochs=1"), tmp_path / "earlier")
    earlier_bytes = (tmp_path / "earlier" / RECORD_FILE).read_bytes()

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", no_space)
    with pytest.raises(OSError, match="No space left"):
        train(compose_cfg(*FAST, "epochs=1"), tmp_path / "full")
    record = read(tmp_path / "full" / RECORD_FILE)
    assert record["status"] == "failed" and "No space left on device" in record["error"]
    assert not list((tmp_path / "full").rglob("*.tmp"))
    assert (tmp_path / "earlier" / RECORD_FILE).read_bytes() == earlier_bytes
    assert earlier["status"] == "completed"


def test_a_failed_record_write_leaves_the_previous_record_whole(tmp_path, monkeypatch):
    from src.run import atomic, records

    records.write_record(tmp_path, {"status": "completed", "n": 1})
    before = (tmp_path / RECORD_FILE).read_bytes()

    def refuse(*args):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.os, "replace", refuse)
    with pytest.raises(PermissionError):
        records.write_record(tmp_path, {"status": "completed", "n": 2})
    assert (tmp_path / RECORD_FILE).read_bytes() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_no_secret_from_the_environment_is_written(tmp_path):
    secret = "wandb-fake-key-5f3a9c0e1d"
    token = "ghp_fake_token_77aa"
    sweep = tmp_path / "multirun"
    result = run_train(
        "-m",
        *FAST[:-2],
        "logger=csv",
        "epochs=1",
        "+note=${oc.env:WANDB_API_KEY}",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env={"WANDB_API_KEY": secret, "MY_SERVICE_TOKEN": token},
    )
    assert result.returncode == 0, result.stderr[-2000:]
    from src.report.__main__ import main as report

    assert report([str(sweep), "--out", str(tmp_path / "results")]) == 0
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(written) > 5
    for path in written:
        content = path.read_bytes()
        assert secret.encode() not in content, path
        assert token.encode() not in content, path
    assert '"note": "***"' in next(sweep.glob(f"*/{RECORD_FILE}")).read_text()
