"""End to end: composing configs, real training, multirun outputs, the run record and the report."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from src.report.__main__ import main as report_main
from src.report.curves import read_curve
from src.run.config_keys import DIRNAME_EXCLUDED
from src.run.records import RECORD_FILE, SCHEMA_VERSION
from src.training.single import train

from .conftest import config_options, run_train


@pytest.mark.parametrize("group", ["norm", "model", "dataset", "optim", "trainer", "logger", "callbacks"])
def test_every_option_of_every_group_composes(compose_cfg, group):
    options = config_options(group)
    assert options, f"conf/{group}/ has no options"
    for option in options:
        cfg = compose_cfg(f"{group}={option}")
        assert cfg.batch == 32 and cfg.epochs > 0 and cfg.study == "default"
        if group == "dataset" and option not in ("npz", "image_folder"):
            assert cfg.dataset.batch_size == cfg.batch


def test_short_training_on_digits_learns_and_writes_the_record(compose_cfg, tmp_path):
    cfg = compose_cfg("dataset=digits", "norm=gn", "batch=32", "epochs=3", "trainer.accelerator=cpu")
    record = train(cfg, tmp_path / "run", overrides=["norm=gn"], choices={"norm": "gn", "dataset": "digits"})
    assert record["metrics"]["test_error"] < 10.0, record["metrics"]
    saved = json.loads((tmp_path / "run" / RECORD_FILE).read_text())
    assert saved["status"] == "completed"
    identity = {key: saved[key] for key in ("norm", "batch", "dataset", "seed", "epochs")}
    assert identity == {"norm": "gn", "batch": 32, "dataset": "digits", "seed": 0, "epochs": 3}
    assert saved["lr"] == pytest.approx(0.1)  # base_lr × 32 / 32
    assert saved["config"]["norm"]["layer"]["groups"] == 32
    assert saved["norm_layers"] == {
        "GroupNorm(groups=16, channels=32)": 2,
        "GroupNorm(groups=32, channels=64)": 2,
        "GroupNorm(groups=32, channels=128)": 2,
    }
    assert set(saved["metrics"]) == {"val_error", "best_val_error", "test_error", "train_loss"}
    timing = saved["timing"]
    assert timing["train_steps"] == 3 * (saved["data"]["splits"]["train"] // 32)
    assert timing["steps_per_second"] > 0 and timing["fit_seconds"] >= timing["train_seconds"] > 0
    assert 0 < timing["median_step_ms"] < 1e3 * timing["train_seconds"]
    assert {"torch", "lightning", "device", "git_commit", "machine"} <= set(saved["environment"])
    assert (tmp_path / "run" / "metrics.csv").exists()
    assert not list((tmp_path / "run").glob(".*.tmp"))
    # the per-epoch curve is in the record, equal to what Lightning logged to metrics.csv
    assert saved["schema_version"] == SCHEMA_VERSION
    curve = saved["curve"]
    assert [point["epoch"] for point in curve] == [0, 1, 2]
    logged = read_curve(tmp_path / "run")
    assert [p["val_error"] for p in curve] == pytest.approx(list(logged["val_error"]))
    assert [p["train_loss"] for p in curve] == pytest.approx(list(logged["train_loss"]), rel=1e-6)
    assert curve[-1]["val_error"] == pytest.approx(saved["metrics"]["val_error"])
    assert 0.1 > curve[0]["lr"] > curve[1]["lr"] > curve[2]["lr"] >= 0  # cosine, read at each epoch's end
    assert saved["norm_info"]["label"] == "Group Norm" and saved["norm_info"]["batch_dependent"] is False


def test_learning_rate_scales_linearly_with_the_batch(compose_cfg, tmp_path):
    cfg = compose_cfg("dataset=digits", "batch=8", "epochs=1", "logger=none", "model.widths=[8,16]")
    assert train(cfg, tmp_path)["lr"] == pytest.approx(0.1 * 8 / 32)
    cfg = compose_cfg(
        "dataset=digits", "batch=8", "epochs=1", "logger=none", "model.widths=[8,16]", "optim.scale_lr=false"
    )
    assert train(cfg, tmp_path / "unscaled")["lr"] == pytest.approx(0.1)


def test_a_failing_run_records_its_error(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "dataset=digits",
        "batch=8",
        "epochs=1",
        "logger=none",
        "norm=gn",
        "norm.layer.groups=3",
        "norm.layer.min_group_size=1",
        "model.widths=[8,16]",
    )
    with pytest.raises(ValueError, match=r"norm\.layer\.groups=3"):
        train(cfg, tmp_path)
    record = json.loads((tmp_path / RECORD_FILE).read_text())
    assert record["status"] == "failed" and "norm.layer.groups=3" in record["error"]


def test_multirun_writes_one_record_per_config_and_the_report_tables_them(tmp_path):
    sweep = tmp_path / "multirun"
    result = run_train(
        "-m",
        "norm=bn,gn",
        "batch=4,16",
        "dataset=digits",
        "epochs=1",
        "model.widths=[8,16]",
        "study=smoke",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = sorted(sweep.glob(f"*/{RECORD_FILE}"))
    fixed = "dataset=digits,epochs=1,model.widths=[8,16]"  # every override but study names the directory
    assert [p.parent.name for p in records] == [f"batch={b},{fixed},norm={n}" for b in (16, 4) for n in ("bn", "gn")]
    for path in records:
        record = json.loads(path.read_text())
        assert record["status"] == "completed" and record["study"] == "smoke"
        assert f"batch={record['batch']}" in path.parent.name and f"norm={record['norm']}" in path.parent.name

    assert report_main([str(sweep), "--out", str(tmp_path / "results")]) == 0
    runs = pd.read_csv(tmp_path / "results" / "smoke" / "runs.csv")
    assert len(runs) == 4 and set(runs["norm"]) == {"bn", "gn"}
    summary = (tmp_path / "results" / "smoke" / "summary.md").read_text()
    bn4 = runs[(runs.norm == "bn") & (runs.batch == 4)].test_error.item()
    assert f"| bn | {bn4:.2f} (1) |" in summary
    assert "python -m src.report" in summary and "commit:" in summary
    from src.report.commands import project_relative

    rebuilt = (  # the sweep directory as the checkout it was launched from names it, never an absolute path
        f"python -m src.train -m hydra.sweep.dir={project_relative(str(sweep))} norm=bn,gn batch=4,16 dataset=digits"
        " epochs=1 "
        "'model.widths=[8,16]' study=smoke"
    )
    assert f"- runs launched by: `{rebuilt}`" in summary


def test_default_multirun_directory_is_stable_and_readable(compose_cfg):
    from hydra import compose

    cfg = compose("train", overrides=["norm=gn"], return_hydra_config=True)
    assert cfg.hydra.sweep.dir == "multirun/default"
    assert cfg.hydra.job.config.override_dirname.exclude_keys == list(DIRNAME_EXCLUDED)
    assert cfg.hydra.job.config.override_dirname.kv_sep == "="
    assert cfg.hydra.job.config.override_dirname.item_sep == ","


def test_unknown_norm_fails_at_once_listing_the_available_ones(tmp_path):
    result = run_train("norm=nope", cwd=tmp_path, timeout=60)
    assert result.returncode != 0
    assert "Could not find 'norm/nope'" in result.stderr
    for name in ("bn", "gn", "ln", "in", "none"):
        assert f"\t{name}\n" in result.stderr
    assert not (tmp_path / "outputs").exists()


def test_help_and_cfg_job(tmp_path):
    help_text = run_train("--help", cwd=tmp_path, timeout=60).stdout
    assert "normlab" in help_text and "norm: bn, brn, frn, ghost, gn" in help_text and "dataset:" in help_text
    assert "callbacks: default, none, rich" in help_text and "debug: fast, overfit" in help_text
    # the studies with their one-line question (conf/experiment/*.yaml's report.title)
    assert "== Studies (conf/experiment/<name>.yaml) ==" in help_text
    assert "  demo                     Does BN degrade at batch 2 while GN does not?" in help_text
    job = run_train("--cfg", "job", "norm=ln", "batch=2", cwd=tmp_path, timeout=60)
    assert job.returncode == 0 and "name: ln" in job.stdout and "batch: 2" in job.stdout


@pytest.mark.slow
def test_the_readme_card_command_writes_six_records(tmp_path):
    result = run_train(
        "-m",
        "norm=bn,gn,ln",
        "batch=2,32",
        "epochs=1",
        "dataset.train_size=2000",
        f"hydra.sweep.dir={tmp_path / 'm'}",
        cwd=tmp_path,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    records = [json.loads(p.read_text()) for p in (tmp_path / "m").glob(f"*/{RECORD_FILE}")]
    assert len(records) == 6 and all(r["status"] == "completed" for r in records)
