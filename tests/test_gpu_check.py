"""make gpu-check: its reduced CPU form end to end, and the GPU form's commands compose."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir

from benchmarks import gpu_check, gpu_plans, gpu_steps
from tests.conftest import ROOT

SWEEPS = ROOT / "sweeps"


@pytest.mark.slow  # every GPU path's CPU form, minutes on 2 cores: make test-all
def test_cpu_form_runs_every_step(tmp_path: Path) -> None:
    out = tmp_path / "check"
    environment = {**os.environ, "PYTHONPATH": str(ROOT)}
    completed = subprocess.run(
        [sys.executable, "-m", "benchmarks.gpu_check", "--cpu", "--out", str(out)],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert completed.returncode == 0, completed.stdout[-3000:] + completed.stderr[-3000:]
    checks = json.loads((out / "checks.json").read_text())
    assert [step["step"] for step in checks["steps"]] == list(gpu_steps.STEPS)
    assert {step["status"] for step in checks["steps"]} == {"passed"}
    details = {step["step"]: step["details"] for step in checks["steps"]}
    assert details["single_eager"]["device"] == "cpu"
    assert details["parallel"]["jobs"] == 2 and details["parallel"]["devices"] == ["cpu"]
    assert details["bench"]["b2_eager_ratio"] > 0
    assert set(details["small_batch"]) >= {"bn@2", "bn@32", "gn@2", "gn@32"}
    compiled = json.loads((out / "runs" / "single_compiled" / "result.json").read_text())
    assert compiled["timing"]["compiled"] is True
    sweep = [json.loads(path.read_text()) for path in (out / "runs" / "small_batch").rglob("result.json")]
    gn_layers = next(record for record in sweep if record["norm"] == "gn")["norm_layers"]
    assert any(layer.startswith("GroupNorm(groups=8, channels=16)") for layer in gn_layers), gn_layers
    with tarfile.open(out / "gpu_check.tar.gz") as archive:
        names = archive.getnames()
    assert "checks.md" in names and "bench/throughput.csv" in names
    assert "results/gpu_check_small_batch/claims.md" in names
    assert sum(name.startswith("runs/") and name.endswith("result.json") for name in names) == 2 + 1 + 1 + 1 + 2 + 4
    assert "passed" in details["exactness"]["pytest"]
    assert details["fused_sweep"]["modes"] == ["eager"]  # fused_step=auto on a CPU without compile=true
    assert not any(name.endswith(".ckpt") for name in names)


def _compose(config_dir: Path, name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=True)


def test_gpu_form_commands_compose(tmp_path: Path) -> None:
    """The GPU plan's runs are valid configs, so the script cannot rot between GPU visits."""
    context = gpu_steps.Context(gpu_plans.GPU_PLAN, tmp_path, 0.0, tmp_path)
    cfg = _compose(ROOT / "conf", "train", gpu_steps.short_run(context, compiled=True))
    assert cfg.trainer.accelerator == "gpu" and cfg.compile and cfg.dataset.name == "cifar10_jpeg"
    search = f"hydra.searchpath=[file://{ROOT / 'conf'}]"
    study = _compose(SWEEPS, "small_batch_cifar10_gpu", [search, "norm=gn", *gpu_plans.GPU_PLAN.sweep_data])
    assert study.norm.layer.groups == 32 and not study.model.zero_init_last and study.dataset.train_size == 10000
    assert study.hydra.sweeper.params.norm == "bn,gn"


def test_refuses_gpu_form_without_gpu(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(SystemExit):
        gpu_check.main(["--out", str(tmp_path)])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--budget-s", "0"], "--budget-s=0: it must be a number of seconds > 0"),
        (["--steps", "nosuch"], "--steps: unknown ['nosuch']"),
    ],
)
def test_a_bad_argument_fails_before_any_step(tmp_path: Path, capsys, args, message) -> None:
    with pytest.raises(SystemExit) as stopped:
        gpu_check.main(["--out", str(tmp_path / "out"), "--cpu", *args])
    assert stopped.value.code == 2 and message in capsys.readouterr().err and not (tmp_path / "out").exists()
