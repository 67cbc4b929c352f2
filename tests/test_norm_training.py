"""Every norm in conf/norm/ (old and new) trains the small CNN on digits, through the real training entry point."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from src.run.records import RECORD_FILE
from src.training.single import train

from .conftest import config_options

NORMS = config_options("norm")
COMMON = ["dataset=digits", "batch=32", "logger=none", "trainer.accelerator=cpu", "model.widths=[32,64]"]
#: 6 epochs (240 steps) take every norm below 5 % test error but spectral norm: with every conv and
#: linear layer 1-Lipschitz (σ = 1) and no activation norm, the logits stay small and it learns far more
#: slowly (about 75 % error after 3 epochs, 25 % after 8), so it gets 30 epochs (about 10 % error). That
#: run alone takes as long as five others, so it is marked slow (``make test-all``); the rest take ~45 s.
EPOCHS = {"spectral": 30}
MAX_TEST_ERROR = 15.0  # percent; chance is 90 %


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """One intra-op thread: these tiny models only contend for a shared 2-core machine with more."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "name", [pytest.param(name, marks=pytest.mark.slow) if name in EPOCHS else name for name in NORMS]
)
def test_every_norm_trains_the_small_cnn_on_digits(compose_cfg, tmp_path: Path, name: str):
    cfg = compose_cfg(f"norm={name}", f"epochs={EPOCHS.get(name, 6)}", *COMMON)
    record = train(cfg, tmp_path, overrides=[f"norm={name}"], choices={"norm": name, "dataset": "digits"})
    saved = json.loads((tmp_path / RECORD_FILE).read_text())
    assert saved["status"] == "completed" and saved["norm"] == name
    assert record["metrics"]["test_error"] < MAX_TEST_ERROR, record["metrics"]
    assert (saved["norm_layers"] == {}) == (name == "none"), saved["norm_layers"]
    if name == "switchable":
        # the learned mixture weights of every layer, softmaxed, are recorded under norm_state
        state = saved["norm_state"]
        assert len(state) == 4, state
        for layer_state in state.values():
            assert set(layer_state) == {"mean_weights", "var_weights"}
            for weights in layer_state.values():
                assert set(weights) == {"in", "ln", "bn"}
                assert sum(weights.values()) == pytest.approx(1.0)
                assert all(0 < w < 1 for w in weights.values())
            assert layer_state["mean_weights"] != pytest.approx({"in": 1 / 3, "ln": 1 / 3, "bn": 1 / 3})  # learned
        assert state == record["norm_state"]
    if name == "brn":
        assert all(s["steps"] == saved["timing"]["train_steps"] for s in saved["norm_state"].values())


def test_an_invalid_norm_parameter_fails_before_training(compose_cfg, tmp_path: Path):
    cfg = compose_cfg("norm=ghost", "norm.layer.virtual_batch=3", *COMMON)
    with pytest.raises(ValueError, match=r"^norm\.layer\.virtual_batch=3 is invalid: it must divide batch=32"):
        train(cfg, tmp_path)
    saved = json.loads((tmp_path / RECORD_FILE).read_text())
    assert saved["status"] == "failed" and "norm.layer.virtual_batch=3" in saved["error"]
    assert not saved["timing"] and not saved["metrics"]  # nothing was trained
