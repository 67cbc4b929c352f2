"""``fused_step=auto``, the default (issue 31): the fused loop wherever it trains a run as the per-step loop
would, else the per-step loop, said in the log and in the record; a named mode is refused in one line
where it cannot (src/training/fused_step.py: ``mode_for``, ``fused_obstacle``)."""

from __future__ import annotations

import functools
import logging

import pytest
import torch

from src.training.fused_step import FusedStepRefused, checkpoint_loop, mode_for

from .conftest import killed_at_second_epoch

CPU = torch.device("cpu")
NET = torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1))
SGD = functools.partial(torch.optim.SGD, momentum=0.9)
BASE = ("dataset=digits", "dataset.train_size=48", "batch=4", "model.widths=[8,16]", "norm_groups=4")
BASE += ("logger=none", "trainer.accelerator=cpu")

OBSTACLES = [
    ({"world_size": 2}, r"2 devices: the fused step trains on one device"),
    ({"trainer": {"limit_train_batches": 5}}, r"trainer.limit_train_batches=5: the fused loop trains whole epochs"),
    ({"trainer": {"overfit_batches": 2}}, r"trainer.overfit_batches=2: the fused loop draws every epoch"),
    ({"trainer": {"val_check_interval": 0.5}}, r"trainer.val_check_interval=0.5: the fused loop validates once"),
    ({"trainer": {"gradient_clip_val": 1.0}}, r"trainer.gradient_clip_val=1.0: the fused update does not clip"),
    ({"optimizer": functools.partial(torch.optim.Adam)}, r"optim.optimizer=Adam: the fused step implements"),
    ({"saved_fused": False}, r"the checkpoint it resumes was written by the per-step loop"),
]


@pytest.mark.parametrize(("setting", "why"), OBSTACLES, ids=[why.split(":")[0] for _, why in OBSTACLES])
def test_auto_takes_the_per_step_loop_where_the_fused_one_differs_and_a_named_mode_is_refused(setting, why, caplog):
    with caplog.at_level(logging.INFO, logger="src.training.fused_step"):
        assert mode_for("auto", CPU, NET, **setting) is None
    assert any(why.replace("\\", "") in message for message in caplog.messages), caplog.messages
    with pytest.raises(FusedStepRefused, match=rf"^fused_step=eager: {why}.* \(use fused_step=auto or off\)$"):
        mode_for("eager", CPU, NET, **setting)


def test_auto_is_eager_on_a_cpu_compiled_with_compile_true_and_keeps_a_fused_checkpoints_loop():
    neutral = {"trainer": {"limit_train_batches": 1.0, "gradient_clip_val": None}, "optimizer": SGD}
    assert mode_for("auto", CPU, NET, **neutral) == "eager"
    assert mode_for("auto", CPU, NET, compile=True, **neutral) == "compile"
    assert mode_for("auto", CPU, NET, saved_fused=True, **neutral) == "eager"
    assert mode_for("off", CPU, NET, world_size=2) is None  # off is never refused


def test_checkpoint_loop_reads_which_loop_wrote_a_checkpoint(tmp_path):
    torch.save({"normlab": {"fused": {"steps_done": 3}}}, tmp_path / "fused.ckpt")
    torch.save({"normlab": {"curve": []}}, tmp_path / "steps.ckpt")
    torch.save({"normlab_pack": {"fused": {}}}, tmp_path / "pack.ckpt")
    assert checkpoint_loop(tmp_path / "fused.ckpt", "normlab") is True
    assert checkpoint_loop(tmp_path / "steps.ckpt", "normlab") is False
    assert checkpoint_loop(tmp_path / "pack.ckpt", "normlab_pack") is True
    assert checkpoint_loop(None, "normlab") is None


def test_the_default_run_trains_fused_and_debug_fast_steps_per_batch(compose_cfg, tmp_path):
    from src.training.single import train

    record = train(compose_cfg(*BASE, "epochs=1"), tmp_path / "default")
    assert record["status"] == "completed" and record["timing"]["fused_step"] == "eager"
    assert record["timing"]["train_steps"] == 48 // 4
    debug = train(compose_cfg(*BASE, "debug=fast"), tmp_path / "debug")
    assert debug["status"] == "completed" and "fused_step" not in debug["timing"]
    assert debug["timing"]["train_steps"] == 5  # trainer.limit_train_batches: 5 steps, not the epoch's 12


@pytest.mark.parametrize("written_by", ["off", "eager"])
def test_auto_resumes_a_checkpoint_with_the_loop_that_wrote_it(compose_cfg, tmp_path, monkeypatch, written_by):
    from src.training import module
    from src.training.single import train

    first = compose_cfg(*BASE, "epochs=2", f"fused_step={written_by}")
    with killed_at_second_epoch(monkeypatch, module.Classifier):
        train(first, tmp_path / "run")
    record = train(compose_cfg(*BASE, "epochs=2", "fused_step=auto"), tmp_path / "run")
    assert record["status"] == "completed" and record["timing"]["resumed_from_epoch"] == 1
    assert record["timing"].get("fused_step") == (None if written_by == "off" else "eager")
    assert record["timing"]["train_steps"] == 2 * 48 // 4


def test_the_fused_loop_reports_its_steps_inside_the_epoch_to_the_progress_callbacks(
    compose_cfg, tmp_path, monkeypatch
):
    """One Lightning tick an epoch, yet the progress lines and bars count steps: the loop calls
    ``on_fused_steps`` (here at every step: PROGRESS_SECONDS = 0)."""
    from src.training import epoch_loop
    from src.training.callbacks import EpochLines
    from src.training.single import train

    seen: list[tuple[int, int]] = []
    monkeypatch.setattr(epoch_loop, "PROGRESS_SECONDS", 0.0)
    monkeypatch.setattr(
        EpochLines, "on_fused_steps", lambda self, trainer, module, done, total: seen.append((done, total))
    )
    record = train(compose_cfg(*BASE, "epochs=1"), tmp_path / "run")
    assert record["timing"]["fused_step"] == "eager"
    assert seen == [(done, 12) for done in range(1, 13)]
