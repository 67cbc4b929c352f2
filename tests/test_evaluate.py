"""Kept weights (issue 17, point 5): ``save_weights=final|best`` and ``python -m src.evaluate <run_dir>``."""

from __future__ import annotations

import json

import pytest

from src.evaluate import main as evaluate_main
from src.run.records import RECORD_FILE
from src.training.callbacks import WEIGHTS_FILE
from src.training.single import train

FAST = ("dataset=digits", "model.widths=[8,16]", "logger=none", "trainer.accelerator=cpu", "epochs=2", "batch=16")


def test_a_kept_model_re_evaluates_to_the_recorded_error(compose_cfg, tmp_path, capsys):
    record = train(compose_cfg(*FAST, "save_weights=final"), tmp_path)
    assert (tmp_path / WEIGHTS_FILE).exists() and not (tmp_path / "checkpoints").exists()
    assert record["weights"] == {
        "file": WEIGHTS_FILE,
        "which": "final",
        "epoch": 1,
        "val_error": pytest.approx(record["metrics"]["val_error"]),
    }
    assert evaluate_main([str(tmp_path)]) == 0
    assert evaluate_main([str(tmp_path), "--recompute-bn", "--bn-batches", "5"]) == 0
    saved = json.loads((tmp_path / RECORD_FILE).read_text())
    plain, recomputed = saved["evaluations"]
    assert plain["test_error"] == pytest.approx(record["metrics"]["test_error"], abs=1e-4)  # torchmetrics: float32
    assert plain["images"] == saved["data"]["splits"]["test"] and len(plain["per_class_error"]) == 10
    per_class_wrong = sum(e * n for e, n in zip(plain["per_class_error"], class_counts(tmp_path), strict=True))
    assert per_class_wrong / plain["images"] == pytest.approx(plain["test_error"], abs=1e-3)
    assert recomputed["recompute_bn"] is True and recomputed["bn_layers"] == 4 and recomputed["bn_batches"] == 5
    assert saved["metrics"] == record["metrics"]  # the training metrics stay as they were
    assert "test error" in capsys.readouterr().out


def class_counts(run_dir) -> list[int]:
    from src.evaluate import build_network
    from src.run.records import load_record

    datamodule, _ = build_network(load_record(run_dir / RECORD_FILE).config)
    labels = datamodule.splits["test"].tensors[1]
    return [int((labels == c).sum()) for c in range(10)]


def test_best_weights_are_those_of_the_best_validation_epoch_and_steer_nothing(compose_cfg, tmp_path):
    from omegaconf import OmegaConf

    from src.run.config_keys import config_hash

    record = train(compose_cfg(*FAST, "save_weights=best", "epochs=3"), tmp_path)
    errors = [point["val_error"] for point in record["curve"]]
    assert record["weights"]["which"] == "best" and record["weights"]["val_error"] == pytest.approx(min(errors))
    assert errors[record["weights"]["epoch"]] == pytest.approx(min(errors))
    plain = OmegaConf.to_container(compose_cfg(*FAST), resolve=True)
    kept = OmegaConf.to_container(compose_cfg(*FAST, "save_weights=best"), resolve=True)
    assert config_hash(plain) == config_hash(kept)


def test_evaluating_a_run_without_weights_says_how_to_keep_them(compose_cfg, tmp_path, capsys):
    train(compose_cfg(*FAST, "epochs=1"), tmp_path)
    assert evaluate_main([str(tmp_path)]) == 1
    assert "save_weights=final" in capsys.readouterr().err
