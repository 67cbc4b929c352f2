"""Learning-rate schedules as ``_partial_`` configs (conf/optim/schedule/), and stored configs of the
older layout (``optim.schedule: cosine`` + ``milestones``/``gamma``) hashing as today's."""

from __future__ import annotations

import functools
import math

import pytest
import torch
from omegaconf import OmegaConf

from src.run.config_keys import config_hash, migrate_config
from src.schedules import check_schedule, constant, cosine, step
from src.training.experiment import build, lr_arguments
from src.training.module import Classifier


def test_the_schedules_follow_their_formulas():
    assert cosine(0.0) == 1.0 and cosine(1.0) == pytest.approx(0.0)
    assert cosine(0.25) == pytest.approx(0.5 * (1 + math.cos(math.pi / 4)))
    assert [step(p, milestones=[0.3, 0.6, 0.9], gamma=0.1) for p in (0.0, 0.3, 0.59, 0.6, 0.95)] == pytest.approx(
        [1.0, 0.1, 0.1, 0.01, 0.001]
    )
    assert constant(0.7) == 1.0


@pytest.mark.parametrize(
    ("choice", "progress", "expected"),
    [("cosine", 0.5, 0.5), ("step", 0.8, 0.01), ("constant", 0.9, 1.0)],
)
def test_each_schedule_config_builds_a_function_of_progress(compose_cfg, choice, progress, expected):
    cfg = compose_cfg(f"optim/schedule={choice}")
    schedule = build(cfg.optim.schedule)
    assert schedule(progress) == pytest.approx(expected)
    # called every step: the module keeps a plain partial, not Hydra's, which re-authorizes each call
    checked = check_schedule(schedule)
    assert type(checked) is functools.partial and checked(progress) == schedule(progress)
    assert checked.func is schedule.func and checked.keywords == schedule.keywords


def test_step_parameters_come_from_the_config(compose_cfg):
    cfg = compose_cfg("optim/schedule=step", "optim.schedule.milestones=[0.3,0.6,0.9]", "optim.schedule.gamma=0.5")
    assert build(cfg.optim.schedule)(0.65) == pytest.approx(0.25)


def test_the_module_applies_warmup_and_schedule_every_step(compose_cfg):
    cfg = compose_cfg("optim/schedule=step", "optim.warmup_epochs=1")
    module = Classifier(net=torch.nn.Linear(2, 2), num_classes=2, global_batch=64, **lr_arguments(cfg.optim))
    assert module.lr == pytest.approx(0.2)  # 0.1 × 64 / 32
    assert module.schedule(0.8) == pytest.approx(0.01)


def test_an_unknown_optim_key_and_a_schedule_missing_a_parameter_fail_in_one_line(compose_cfg):
    cfg = compose_cfg("+optim.milestones=[0.5]")
    with pytest.raises(ValueError, match=r"^optim\.milestones is not a known key: allowed are optimizer, schedule, "):
        lr_arguments(cfg.optim)
    with pytest.raises(ValueError, match=r"^optim\.schedule is invalid: calling it with the progress alone fails"):
        check_schedule(lambda progress, gamma: gamma)
    with pytest.raises(ValueError, match=r"^optim\.schedule='cosine' is invalid: it must be a schedule config"):
        check_schedule("cosine")


def _old_layout(config: dict, name: str) -> dict:
    """``config`` as the code before schedule configs stored it."""
    old = OmegaConf.to_container(config, resolve=True)
    schedule = old["optim"].pop("schedule")
    old["optim"].update(
        schedule=name, milestones=schedule.get("milestones", [0.5, 0.75]), gamma=schedule.get("gamma", 0.1)
    )
    del old["standardize_weights"], old["optim"]["warmup_epochs"]  # keys added after those runs
    return old


@pytest.mark.parametrize("name", ["cosine", "step", "constant"])
def test_a_run_stored_in_the_old_layout_keeps_its_hash(compose_cfg, name):
    cfg = compose_cfg(f"optim/schedule={name}")
    new = OmegaConf.to_container(cfg, resolve=True)
    old = _old_layout(cfg, name)
    assert config_hash(old) == config_hash(new)
    assert migrate_config(old)["optim"]["schedule"] == new["optim"]["schedule"]
    assert migrate_config(new) == new  # today's layout is left as it is


def test_a_changed_step_parameter_still_changes_the_hash(compose_cfg):
    cfg = compose_cfg("optim/schedule=step")
    old = _old_layout(cfg, "step")
    old["optim"]["gamma"] = 0.5
    assert config_hash(old) != config_hash(OmegaConf.to_container(cfg, resolve=True))
