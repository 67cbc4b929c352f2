"""Weights & Biases: the logger config, mode resolution, publish_record, and a real offline multirun.

Everything runs offline (``WANDB_MODE=offline``, W&B directories in tmp): no network, no account.
"""

from __future__ import annotations

import json
import logging
import os
import struct
from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate
from omegaconf import OmegaConf

from src.run.records import IDENTITY, RECORD_FILE
from src.run.wandb_mode import resolve_mode
from src.training.loggers import WandbLogger, publish_record

from .conftest import CONF, ROOT, run_train

SWEEPS = ROOT / "sweeps"


def offline_records(path: Path) -> list[Any]:
    """The ``wandb_internal_pb2.Record``s of an offline run's ``run-<id>.wandb`` transaction log.

    The file is W&B's ":W&B" header (7 bytes) followed by LevelDB-log-style records (a 7-byte header
    of checksum, length and type, in 32 KiB blocks) of ``wandb_internal_pb2.Record`` protobufs.
    """
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert data[:4] == b":W&B", f"{path} is not a W&B transaction log"
    block, position, pending, raw_records = 32768, 7, b"", []
    while position + 7 <= len(data):
        room = block - position % block
        if room < 7:
            position += room
            continue
        _checksum, length, kind = struct.unpack("<IHB", data[position : position + 7])
        if kind == 0 and length == 0:
            break
        chunk, position = data[position + 7 : position + 7 + length], position + 7 + length
        if kind == 1:
            raw_records.append(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            raw_records.append(pending + chunk)
    records = []
    for raw in raw_records:
        record = pb.Record()
        record.ParseFromString(raw)
        records.append(record)
    return records


def read_offline_run(path: Path) -> dict[str, Any]:
    """Run info, config, summary and history (each key's last value) from an offline run's ``.wandb`` file."""
    run: dict[str, Any] = {"config": {}, "summary": {}, "history": {}}
    for record in offline_records(path):
        which = record.WhichOneof("record_type")
        if which == "run":
            info = record.run
            run.update(
                name=info.display_name,
                group=info.run_group,
                job_type=info.job_type,
                project=info.project,
                tags=list(info.tags),
            )
            run["config"].update({item.key: json.loads(item.value_json) for item in info.config.update})
        elif which == "config":
            run["config"].update({item.key: json.loads(item.value_json) for item in record.config.update})
        elif which == "summary":
            for item in record.summary.update:
                run["summary"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        elif which == "history":
            for item in record.history.item:
                run["history"][item.key or ".".join(item.nested_key)] = json.loads(item.value_json)
        elif which == "exit":
            run["exit_code"] = record.exit.exit_code
    return run


@pytest.fixture
def offline_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """W&B offline, with every directory it writes in tmp and no credentials."""
    env = {
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(tmp_path / "wandb_dir"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb_cache"),
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb_config"),
        "WANDB_DATA_DIR": str(tmp_path / "wandb_data"),
        "WANDB_SILENT": "true",
        "NETRC": str(tmp_path / "no_netrc"),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    Path(env["WANDB_DIR"]).mkdir()
    return env


def test_the_wandb_logger_config_keeps_the_csv_logger_and_needs_no_hydra_job(compose_cfg, tmp_path, offline_env):
    cfg = compose_cfg("logger=wandb", "norm=gn", "batch=4", "study=s")
    assert set(cfg.logger) == {"csv", "wandb"}
    assert cfg.logger.csv._target_ == "pytorch_lightning.loggers.CSVLogger"
    wandb_cfg = cfg.logger.wandb
    assert wandb_cfg._target_ == "src.training.loggers.WandbLogger" and wandb_cfg.job_type == "train"
    assert wandb_cfg.group == "s" and "identity" not in wandb_cfg  # the identity is the run record's
    assert wandb_cfg.mode is None and wandb_cfg.project == os.environ.get("WANDB_PROJECT", "normlab")
    OmegaConf.to_container(cfg, resolve=True)  # resolvable outside a Hydra job (train() resolves it all)
    identity = {"study": "s", "norm": "gn", "batch": 4, "dataset": "cifar10_small", "seed": 0, "epochs": 3}
    # as src.training.experiment builds it, with the run record's identity; no W&B run starts yet
    logger = instantiate(wandb_cfg, save_dir=str(tmp_path), identity=identity)
    assert logger._experiment is None
    init = logger._wandb_init
    assert init["name"] == "norm=gn,batch=4,seed=0" and init["group"] == "s" and init["mode"] == "offline"
    assert init["tags"] == ["norm=gn", "batch=4", "dataset=cifar10_small"]
    assert init["config"]["identity"]["norm"] == "gn" and init["project"] == wandb_cfg.project


def test_mode_is_offline_unless_asked_or_logged_in(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_BASE_URL", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    assert resolve_mode() == "offline"
    assert resolve_mode("disabled") == "disabled"
    monkeypatch.setenv("WANDB_MODE", "online")
    assert resolve_mode() == "online"
    monkeypatch.delenv("WANDB_MODE")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secret\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert resolve_mode() == "online"
    monkeypatch.setenv("NETRC", str(tmp_path / "missing"))
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode() == "online"
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode() == "offline"


class FakeConfig(dict):
    def update(self, values: dict, allow_val_change: bool = False) -> None:  # type: ignore[override]
        super().update(values)


class FakeRun:
    def __init__(self, fail_config: bool = False, fail_finish: bool = False):
        self.config = FakeConfig()
        self.summary: dict[str, Any] = {}
        self.exit_code: int | None = None
        self.fail_config, self.fail_finish = fail_config, fail_finish
        if fail_config:
            self.config.update = self._boom  # type: ignore[method-assign]

    def _boom(self, *args: Any, **kwargs: Any) -> None:
        raise ConnectionError("W&B is unreachable")

    def finish(self, exit_code: int = 0) -> None:
        if self.fail_finish:
            raise ConnectionError("cannot finish")
        self.exit_code = exit_code


RECORD = {
    "status": "completed",
    "study": "s",
    "norm": "gn",
    "batch": 2,
    "dataset": "digits",
    "model": "small_cnn",
    "seed": 1,
    "epochs": 1,
    "overrides": ["norm=gn", "batch=2"],
    "config": {"norm": {"name": "gn"}, "batch": 2},
    "metrics": {"test_error": 12.5, "val_error": 11.0, "best_val_error": 10.0, "train_loss": float("nan")},
    "timing": {"steps_per_second": 3.5, "train_steps": 10},
    "norm_state": {"layer": {"mean_weights": {"bn": 0.2}}},
    "lr": 0.00625,
}


def test_publish_record_fills_the_summary_and_config_then_finishes(tmp_path, offline_env):
    logger = WandbLogger(save_dir=str(tmp_path), project="p")
    assert logger._wandb_init["mode"] == "offline"
    assert logger._wandb_init["dir"] == offline_env["WANDB_DIR"]  # WANDB_DIR wins over the run dir
    run = FakeRun()
    logger._experiment = run
    publish_record([object(), logger], RECORD)
    assert run.exit_code == 0
    assert run.summary["test_error"] == 12.5 and run.summary["steps_per_second"] == 3.5
    assert run.summary["norm"] == "gn" and run.summary["batch"] == 2 and run.summary["status"] == "completed"
    assert "train_loss" not in run.summary  # NaN is left out
    assert run.summary["norm_state"] == RECORD["norm_state"]
    assert run.config["identity"]["norm"] == "gn" and run.config["norm"] == {"name": "gn"}

    failed = WandbLogger(save_dir=str(tmp_path))
    failed._experiment = FakeRun()
    publish_record([failed], {**RECORD, "status": "failed", "error": "ValueError: x"})
    assert failed._experiment.exit_code == 1 and failed._experiment.summary["error"] == "ValueError: x"


def test_publish_record_never_raises(tmp_path, offline_env, caplog):
    broken, unfinishable, never_started = (WandbLogger(save_dir=str(tmp_path)) for _ in range(3))
    broken._experiment = FakeRun(fail_config=True)
    unfinishable._experiment = FakeRun(fail_finish=True)
    with caplog.at_level(logging.WARNING, logger="src.training.loggers"):
        publish_record([broken, unfinishable, never_started], RECORD)
        publish_record(None, RECORD)  # type: ignore[arg-type]
    assert broken._experiment.exit_code == 0  # finished even though the summary failed
    assert "W&B summary not written: ConnectionError" in caplog.text
    assert "W&B run not finished cleanly" in caplog.text
    assert never_started._experiment is None  # no W&B run is started just to be finished


@pytest.mark.parametrize(("failing", "fallback"), [(("online",), "offline"), (("online", "offline"), "disabled")])
def test_a_wandb_run_that_cannot_start_falls_back(tmp_path, offline_env, monkeypatch, caplog, failing, fallback):
    import wandb

    real_init = wandb.init

    def init(**kwargs: Any) -> Any:
        if kwargs.get("mode") in failing:
            raise RuntimeError("no network")
        return real_init(**kwargs)

    monkeypatch.setattr(wandb, "init", init)
    logger = WandbLogger(save_dir=str(tmp_path), mode="online")
    with caplog.at_level(logging.WARNING, logger="src.training.loggers"):
        logger.log_metrics({"val/error": 3.0}, step=1)  # training goes on
    assert "W&B could not start online (RuntimeError: no network)" in caplog.text
    assert logger._wandb_init["mode"] == fallback
    publish_record([logger], RECORD)
    assert wandb.run is None
    if fallback == "offline":
        assert list((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*"))  # the run data stays local


def test_the_wandb_sweep_matches_its_study_and_its_command_composes():
    sweep = yaml.safe_load((SWEEPS / "small_batch.wandb.yaml").read_text())
    assert sweep["method"] == "grid" and sweep["metric"] == {"name": "test_error", "goal": "minimize"}
    command = sweep["command"]
    assert command[:4] == ["${env}", "python", "-m", "src.train"] and command[-1] == "${args_no_hyphens}"
    fixed = [arg for arg in command[4:-1] if "=" in arg]
    assert "logger=wandb" in fixed
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        study = compose("small_batch", overrides=[f"hydra.searchpath=[file://{CONF}]"], return_hydra_config=True)
        grid = {key: [str(v) for v in spec["values"]] for key, spec in sweep["parameters"].items()}
        assert grid == {key: str(value).split(",") for key, value in study.hydra.sweeper.params.items()}
        first = [f"{key}={values[0]}" for key, values in grid.items()]
        cfg = compose(
            "small_batch",
            overrides=[f"hydra.searchpath=[file://{CONF}]", *fixed, *first],
            return_hydra_config=True,
        )
    assert cfg.study == "small_batch" and set(cfg.logger) == {"csv", "wandb"} and cfg.norm.name == "bn"
    assert "dir: multirun/small_batch/${hydra:job.override_dirname}" in OmegaConf.to_yaml(cfg.hydra.run)


def test_offline_multirun_gives_each_job_its_own_wandb_run_with_config_and_summary(tmp_path, offline_env):
    sweep = tmp_path / "multirun"
    result = run_train(
        "-m",
        "norm=bn,gn",
        "batch=16",
        "dataset=digits",
        "dataset.train_size=400",
        "epochs=1",
        "model.widths=[8,16]",
        "logger=wandb",
        "study=wbtest",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        env=offline_env,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = sorted(p.parent for p in sweep.glob(f"*/{RECORD_FILE}"))
    assert len(jobs) == 2
    logs = sorted((tmp_path / "wandb_dir" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(logs) == 2, "one offline W&B run per job"
    runs = {run["name"]: run for run in map(read_offline_run, logs)}
    assert set(runs) == {job.name for job in jobs}  # named by the overrides
    for job in jobs:
        record = json.loads((job / RECORD_FILE).read_text())
        assert record["status"] == "completed"
        assert (job / "metrics.csv").exists(), "the CSV logger stays"
        run = runs[job.name]
        assert run["group"] == "wbtest" and run["job_type"] == "train" and run["project"] == "normlab"
        assert {f"norm={record['norm']}", "batch=16", "dataset=digits", "model=small_cnn"} <= set(run["tags"])
        config, summary = run["config"], run["summary"]
        assert config["identity"] == {key: record[key] for key in IDENTITY}
        assert config["norm"] == record["config"]["norm"] and config["batch"] == 16
        assert config["logger"]["wandb"]["_target_"] == "src.training.loggers.WandbLogger" and "csv" in config["logger"]
        assert summary["test_error"] == pytest.approx(record["metrics"]["test_error"])
        assert summary["val_error"] == pytest.approx(record["metrics"]["val_error"])
        assert summary["norm"] == record["norm"] and summary["status"] == "completed"
        assert "test/error" in summary and "trainer/global_step" in summary  # Lightning's own metrics
        assert run["exit_code"] == 0
