"""``debug=`` configs (issue 17, point 3): quick checks that land under ``debug/``, never in a study."""

from __future__ import annotations

import json
import re

import pytest
from omegaconf import OmegaConf

from src.run.config_keys import config_hash, run_dirname
from src.run.records import RECORD_FILE

from .conftest import run_train


def test_debug_fast_is_one_short_epoch_under_debug(tmp_path):
    result = run_train("-m", "debug=fast", "norm=bn,gn", "dataset=digits", "study=mine", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    records = sorted((tmp_path / "debug" / "mine").glob(f"*/{RECORD_FILE}"))
    assert [p.parent.name for p in records] == ["dataset=digits,norm=bn", "dataset=digits,norm=gn"]
    assert not (tmp_path / "multirun").exists() and not (tmp_path / "outputs").exists()
    record = json.loads(records[0].read_text())
    assert record["status"] == "completed" and record["timing"]["train_steps"] == 5
    assert record["config"]["trainer"]["limit_test_batches"] == 2 and record["config"]["debug"] == "fast"


@pytest.mark.slow  # make test-all (idle 2-core CPU: 10-35 s)
def test_debug_overfit_reaches_near_zero_train_loss(tmp_path):
    result = run_train("debug=overfit", "dataset=digits", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    (path,) = (tmp_path / "debug" / "default").glob(f"*/{RECORD_FILE}")
    record = json.loads(path.read_text())
    assert record["data"]["splits"]["train"] == 64 and record["timing"]["epochs_completed"] == 40
    assert record["metrics"]["train_loss"] < 0.05, record["metrics"]
    assert re.search(r"overfit: train loss 0\.0\d+ ≤ 0\.05: it fits", result.stdout + result.stderr)


def test_a_debug_run_never_shares_a_hash_with_the_real_run(compose_cfg):
    real = OmegaConf.to_container(compose_cfg("dataset=digits"), resolve=True)
    fast = OmegaConf.to_container(compose_cfg("dataset=digits", "debug=fast"), resolve=True)
    assert config_hash(real) != config_hash(fast)
    assert run_dirname(["debug=fast", "norm=gn"]) == "norm=gn"  # debug/ is the separation


def test_the_studies_are_listed_with_their_question():
    from src.studies import studies, studies_text

    found = studies()
    assert found["demo"] == "Does BN degrade at batch 2 while GN does not?"
    assert found["small_batch_cifar10_cpu"] == "(a variant of small_batch)"
    assert "  norm_compare             At a normal batch, is BN ≲ GN < LN < IN?" in studies_text().splitlines()
