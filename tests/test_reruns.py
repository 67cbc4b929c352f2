"""Reruns a user can trust: what the config hash covers, refusing to overwrite a completed run, honest
installs, portable memory and locks (issue 12)."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.data import image_folder
from src.run import config_keys
from src.run.config_keys import (
    COMPUTATION_KEYS,
    DIRNAME_EXCLUDED,
    STEERING_KEYS,
    changed_keys,
    config_hash,
    run_dirname,
)
from src.run.provenance import NUMERIC_PACKAGES
from src.run.records import RECORD_FILE
from src.run.resume import REFUSAL_FILE, RunRefused
from src.training import perf
from src.training.callbacks import MemoryMonitor
from src.training.single import train
from tests.conftest import CONF, ROOT, run_train

FAST = ("dataset=digits", "model.widths=[8,16]", "logger=none", "trainer.accelerator=cpu", "epochs=1", "batch=16")
SWEEPS = ROOT / "sweeps"
STUDIES = sorted(p.stem for p in SWEEPS.glob("*.yaml") if not p.name.endswith(".wandb.yaml"))


def resolved(cfg) -> dict:
    return OmegaConf.to_container(cfg, resolve=True)


# ------------------------------------------------------------------------------- what the hash covers
@pytest.mark.parametrize("study", [None, *STUDIES])
def test_every_top_level_key_is_classified(study):
    """A new top-level key in conf/train.yaml or a study file fails here until src/run/config_keys.py says
    whether it changes the computation."""
    with initialize_config_dir(config_dir=str(SWEEPS if study else CONF), version_base="1.3"):
        overrides = [f"hydra.searchpath=[file://{CONF}]"] if study else []
        cfg = compose(study or "train", overrides=overrides)
    keys = set(cfg.keys())
    assert not set(COMPUTATION_KEYS) & set(STEERING_KEYS)
    unclassified = keys - set(COMPUTATION_KEYS) - set(STEERING_KEYS)
    assert not unclassified, f"classify {sorted(unclassified)} in src/run/config_keys.py"


def test_the_run_directory_name_leaves_out_exactly_the_steering_keys():
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True)
    assert list(cfg.hydra.job.config.override_dirname.exclude_keys) == list(DIRNAME_EXCLUDED)
    assert OmegaConf.to_container(cfg.hydra.sweep)["subdir"] == "${run_dirname:${hydra:overrides.task}}"
    overrides = ["seed=1", "norm=gn", "logger=wandb", "+report.title=x", "compile=true", "optim.base_lr=0.05"]
    assert run_dirname(overrides) == "norm=gn,optim.base_lr=0.05,seed=1"


def test_a_run_moved_to_another_device_keeps_its_directory():
    """Steering sub-keys (the accelerator, data on the device) name no run: a run begun on a GPU
    resumes on a CPU in the same directory, as its config hash is the same."""
    on_gpu = ["epochs=64", "norm=bn", "seed=0", "trainer=gpu"]
    moved = [*on_gpu, "trainer.accelerator=cpu", "trainer.benchmark=false", "dataset.on_device=false"]
    assert run_dirname(moved) == run_dirname(on_gpu) == "epochs=64,norm=bn,seed=0,trainer=gpu"
    assert run_dirname(["trainer.max_epochs=3", "dataset.train_size=500"]) == (
        "dataset.train_size=500,trainer.max_epochs=3"
    )


def test_steering_keys_never_change_the_hash(compose_cfg):
    base = config_hash(resolved(compose_cfg(*FAST)))
    for steering in (
        "resume=false",
        "force=true",
        "cpu_threads=1",
        "logger=csv",
        "study=other",
        "compile=true",
        "compile_mode=default",
        "trainer.accelerator=auto",
        "dataset.eval_batch_size=7",
        "+report.title=edited",
        "callbacks=none",
        "callbacks.progress.bar=rich",
    ):
        assert config_hash(resolved(compose_cfg(*FAST, steering))) == base, steering
    for computing in ("optim.base_lr=0.05", "seed=1", "norm=gn", "trainer.precision=bf16-mixed", "norm_groups=8"):
        assert config_hash(resolved(compose_cfg(*FAST, computing))) != base, computing


def test_changed_keys_name_old_and_new_values(compose_cfg):
    old = resolved(compose_cfg(*FAST))
    new = resolved(compose_cfg(*FAST, "optim.optimizer.momentum=0.5", "logger=csv", "epochs=2"))
    assert changed_keys(old, new) == [
        "epochs: 1 → 2",
        "optim.optimizer.momentum: 0.9 → 0.5",
        "trainer.max_epochs: 1 → 2",
    ]


# ------------------------------------------------------------------------------ nothing is overwritten
def test_a_changed_default_is_refused_and_force_keeps_every_old_record(compose_cfg, tmp_path):
    first = train(compose_cfg(*FAST), tmp_path)
    original = (tmp_path / RECORD_FILE).read_bytes()
    # a changed default (conf/optim/sgd.yaml) reaches the same run directory with another config
    with pytest.raises(RunRefused) as refused:
        train(compose_cfg(*FAST, "optim.optimizer.momentum=0.5"), tmp_path)
    message = str(refused.value)
    assert "optim.optimizer.momentum: 0.9 → 0.5" in message and "force=true" in message and "\n" not in message
    assert (tmp_path / RECORD_FILE).read_bytes() == original
    assert (tmp_path / REFUSAL_FILE).read_text().strip() == message
    # force=true retrains and keeps the old record; force=true again keeps that one too
    train(compose_cfg(*FAST, "optim.optimizer.momentum=0.5", "force=true"), tmp_path)
    assert (tmp_path / f"result.{first['config_hash']}.json").read_bytes() == original
    assert not (tmp_path / REFUSAL_FILE).exists()
    second = (tmp_path / RECORD_FILE).read_bytes()
    forced_hash = json.loads(second)["config_hash"]
    train(compose_cfg(*FAST, "optim.optimizer.momentum=0.5", "force=true"), tmp_path)
    assert (tmp_path / f"result.{forced_hash}.json").read_bytes() == second
    assert (tmp_path / f"result.{first['config_hash']}.json").read_bytes() == original


def test_a_record_made_under_an_older_hash_definition_is_still_skipped(compose_cfg, tmp_path):
    train(compose_cfg(*FAST), tmp_path)
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    record["config_hash"] = "0123456789abcdef"  # what an older definition of the hash wrote
    (tmp_path / RECORD_FILE).write_text(json.dumps(record))
    assert train(compose_cfg(*FAST, "cpu_threads=1"), tmp_path)["skipped"]


def _state(sweep: Path) -> dict[str, int]:
    return {str(path.relative_to(sweep)): path.stat().st_mtime_ns for path in sorted(sweep.rglob(RECORD_FILE))}


def test_rerunning_a_finished_sweep_with_steering_changes_retrains_nothing(tmp_path):
    sweep = tmp_path / "sweep"
    args = (
        "-m",
        "--config-dir",
        str(SWEEPS),
        "--config-name",
        "demo",
        "hydra.launcher.n_jobs=1",  # the study's packed launcher, in this process (batch 16: lone runs)
        "norm=bn,gn",
        "batch=16",
        "hydra.sweeper.params.seed=0",  # one seed instead of the study's eight
        "dataset.train_size=200",
    )
    common = (*FAST, f"hydra.sweep.dir={sweep}")
    assert run_train(*args, *common, cwd=tmp_path).returncode == 0
    before = _state(sweep)
    assert len(before) == 2
    env = {"WANDB_MODE": "disabled", "WANDB_DIR": str(tmp_path)}
    steering = ("resume=false", "cpu_threads=1", "logger=wandb", "report.title=edited", "compile=true")
    again = run_train(*args, *common, *steering, cwd=tmp_path, env=env)
    assert again.returncode == 0, again.stderr[-2000:]
    assert _state(sweep) == before  # same directories, no record rewritten
    assert "skipping" in again.stdout + again.stderr


@pytest.mark.slow  # make test-all (idle 2-core CPU: 10-35 s)
def test_a_sweep_lists_its_refused_runs_and_goes_on(tmp_path):
    sweep = tmp_path / "sweep"
    studies = tmp_path / "studies"
    studies.mkdir()
    study = studies / "study.yaml"
    study.write_text("defaults:\n  - train\n  - _self_\n")
    common = ("-m", "--config-dir", str(studies), "--config-name", "study", *FAST, f"hydra.sweep.dir={sweep}")
    assert run_train(*common, "norm=bn", cwd=tmp_path).returncode == 0
    bn_record = next(sweep.rglob(RECORD_FILE))
    original = bn_record.read_bytes()
    # a changed YAML default under the completed run (the run directory names stay the same)
    study.write_text(study.read_text() + "optim:\n  optimizer:\n    momentum: 0.5\n")
    result = run_train(*common, "norm=bn,gn", cwd=tmp_path)
    assert result.returncode != 0
    assert "refused" in result.stderr and "optim.optimizer.momentum: 0.9 → 0.5" in result.stderr
    assert bn_record.read_bytes() == original
    assert len(list(sweep.rglob(RECORD_FILE))) == 2  # the gn run of the same sweep trained


# -------------------------------------------------------------------------------- bad input, faults
def test_npz_without_a_path_names_the_key_and_the_fix(compose_cfg, tmp_path):
    with pytest.raises(
        ValueError, match=r"dataset\.path is required and was not given\. Give dataset\.path=<file\.npz>"
    ):
        train(compose_cfg("dataset=npz", "logger=none", "epochs=1"), tmp_path)


def test_a_missing_mandatory_value_fails_with_one_line(compose_cfg, tmp_path):
    with pytest.raises(ValueError, match=r"^norm\.name: required and not given \(give norm\.name=<value>\)$"):
        train(compose_cfg(*FAST, "norm.name=???"), tmp_path)


def test_two_parallel_jobs_decode_one_archive_once(tmp_path, monkeypatch):
    from PIL import Image

    for split in ("train", "test"):
        for label in ("a", "b"):
            folder = tmp_path / "images" / split / label
            folder.mkdir(parents=True)
            for index in range(3):
                Image.fromarray(np.full((8, 8, 3), index * 40, np.uint8)).save(folder / f"{index}.png")
    calls = []
    real_decode = image_folder.decode_image_folder

    def counting_decode(root):
        calls.append(root)
        return real_decode(root)

    monkeypatch.setattr(image_folder, "decode_image_folder", counting_decode)

    def load():
        module = image_folder.ImageFolderDataModule(
            path=str(tmp_path / "images"), cache_dir=str(tmp_path / "cache"), name="x", batch_size=2, val_size=2
        )
        module.load_arrays()

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1


# ----------------------------------------------------------------------- records, memory, devices
def test_records_name_the_numeric_package_versions_and_a_per_run_peak(compose_cfg, tmp_path):
    record = train(compose_cfg(*FAST), tmp_path)
    packages = record["environment"]["packages"]
    assert set(packages) == set(NUMERIC_PACKAGES) and packages["torch"].startswith(torch.__version__.split("+")[0])
    assert record["memory"]["peak_mb"] >= max(record["memory"]["per_epoch_mb"]) > 0


def test_the_memory_peak_is_the_runs_own():
    monitor = MemoryMonitor(every_n_steps=1)
    assert monitor.peak_mb(torch.device("cpu")) == 0.0  # nothing sampled yet: no earlier run's peak
    value = monitor._sample(torch.device("cpu"))
    assert monitor.peak_mb(torch.device("cpu")) == value > 0


def test_a_cpu_only_torch_on_a_gpu_machine_says_so(monkeypatch, tmp_path):
    fake_gpu = tmp_path / "nvidia0"
    fake_gpu.touch()
    monkeypatch.setattr(perf, "NVIDIA_DEVICE", fake_gpu)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)
    reason = perf.device_mismatch(torch.device("cpu"), "auto")
    assert "CPU-only build" in reason
    assert perf.device_mismatch(torch.device("cpu"), "auto") == reason
    monkeypatch.setattr(perf, "NVIDIA_DEVICE", tmp_path / "absent")
    assert perf.device_mismatch(torch.device("cpu"), "auto") is None


# ------------------------------------------------------------------------------------------ installs
def test_another_torch_spec_reinstalls_torch():
    """The install stamp depends on TORCH_SPEC: after `make setup`, another spec is not 'Nothing to be done'."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("CONDA")}
    same = subprocess.run(["make", "-n", "setup"], cwd=ROOT, capture_output=True, text=True, env=environment)
    other = subprocess.run(
        ["make", "-n", "setup", "TORCH_SPEC=torch==2.13.0 --index-url https://download.pytorch.org/whl/cu128"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=environment,
    )
    assert "pip install" not in same.stdout, same.stdout
    assert "--force-reinstall --no-deps torch==2.13.0 --index-url" in other.stdout


def test_every_imported_package_is_declared():
    import tomllib

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {d.split(">")[0].split("=")[0].split("<")[0].strip().lower() for d in declared}
    for needed in ("scipy", "pyyaml", "psutil", "filelock", "torch", "pytorch-lightning", "hydra-core", "pillow"):
        assert needed in names, needed
    assert config_keys.__doc__ and "computation" in config_keys.__doc__


def test_a_run_locked_by_another_sweep_is_refused_in_one_line_and_listed(tmp_path):
    from omegaconf import OmegaConf as Conf

    from src.run.resume import RunLocked, run_lock
    from src.sweep.summary import SweepSummary

    summary = SweepSummary()
    summary.on_multirun_start(Conf.create({}))
    run_dir = tmp_path / "sweep" / "norm=bn"
    with run_lock(run_dir), pytest.raises(RunLocked) as locked, run_lock(run_dir):
        pass
    assert f"pid {os.getpid()}" in str(locked.value) and "\n" not in str(locked.value)
    with pytest.raises(SystemExit):
        summary.on_multirun_end(Conf.create({"hydra": {"sweep": {"dir": str(tmp_path / "sweep")}}}))
