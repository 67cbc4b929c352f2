"""Values that used to pass silently (issue 32) now fail before training with one line naming the key."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from src.training.validation import ConfigError, validate_config

GOOD = {"batch": 2, "epochs": 1, "seed": 0, "optim": {"base_lr": 0.1}, "compile": False, "study": "demo"}


def test_a_good_config_passes():
    validate_config(OmegaConf.create(GOOD))
    validate_config(OmegaConf.create({**GOOD, "study": "small_batch_cifar10.v2-b"}))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"optim": {"base_lr": float("nan")}}, "optim.base_lr=nan is invalid: it must be a finite number > 0"),
        ({"optim": {"base_lr": float("inf")}}, "optim.base_lr=inf is invalid"),
        ({"compile": "maybe"}, "compile='maybe' is invalid: it must be true or false"),
        ({"resume": 1}, "resume=1 is invalid: it must be true or false"),
        ({"study": "../../escape"}, "study='../../escape' is invalid: it must be a plain name"),
        ({"study": ".."}, "study='..' is invalid"),
        ({"study": "a/b"}, "study='a/b' is invalid"),
        # stop 38: values a run only met when it trained (a failed record each), or never
        (
            {"optim": {"base_lr": 0.1, "warmup_epochs": 5}},
            "optim.warmup_epochs=5 is invalid: it must be a number from 0",
        ),
        ({"optim": {"base_lr": 0.1, "warmup_epochs": -1}}, "optim.warmup_epochs=-1 is invalid"),
        ({"optim": {"base_lr": 0.1, "base_batch": 0}}, "optim.base_batch=0 is invalid: it must be an integer >= 1"),
        ({"optim": {"base_lr": 0.1, "scale_lr": "yes"}}, "optim.scale_lr='yes' is invalid: it must be true or false"),
        ({"optim": {"base_lr": 0.1, "optimizer": {"momentum": 1.5}}}, "optim.optimizer.momentum=1.5 is invalid"),
        ({"optim": {"base_lr": 0.1, "optimizer": {"weight_decay": -1}}}, "optim.optimizer.weight_decay=-1 is invalid"),
        ({"cpu_threads": 0}, "cpu_threads=0 is invalid: it must be an integer >= 1"),
        ({"cpu_threads": "all"}, "cpu_threads='all' is invalid"),
        ({"save_weights": "last"}, "save_weights='last' is invalid: choose one of none, final, best"),
        ({"compile_mode": "fast"}, "compile_mode='fast' is invalid: choose one of default, reduce-overhead"),
        ({"trainer": {"precision": "8-bit"}}, "trainer.precision='8-bit' is invalid: choose one of 16-mixed"),
        ({"trainer": {"devices": 0}}, "trainer.devices=0 is invalid: give a count >= 1, -1 (every GPU)"),
    ],
)
def test_a_silently_accepted_value_now_fails_with_one_line(change, message):
    with pytest.raises(ConfigError) as caught:
        validate_config(OmegaConf.create({**GOOD, **change}))
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("override", "shown"), [("+optim.optimizer.lr=0.5", "0.5"), ("+optim.optimizer.params=[]", "[]")]
)
def test_an_optimizer_argument_normlab_sets_itself_is_refused(compose_cfg, override, shown):
    """``torch.optim.SGD`` takes ``lr``, so the optimizer's own check passed it; but the run calls the
    optimizer with ``lr=`` its rule's rate, which wins: the record said 0.5 while the run trained at 0.1."""
    key = override[1:].split("=")[0]
    with pytest.raises(ConfigError) as caught:
        validate_config(compose_cfg("dataset=digits", override))
    message = str(caught.value)
    assert message.startswith(f"{key}={shown} is invalid: normlab passes the optimizer its") and "\n" not in message
    if key.endswith("lr"):
        assert "set optim.base_lr" in message


@pytest.mark.parametrize(
    ("override", "meant"),
    [
        ("+norm_group=8", "norm_groups"),
        ("+epoch=3", "epochs"),
        ("+seeds=4", "seed"),
        ("+optim_base_lr=0.2", "optim.base_lr"),
        ("+dataset_augment=crop_flip", "dataset.augment"),
        ("+lr=0.2", "optim.base_lr"),
        ("+batch_size=8", "batch"),
        ("+num_groups=8", "norm_groups"),
    ],
)
def test_a_top_level_key_near_one_normlab_reads_is_refused(compose_cfg, override, meant):
    """+key=value adds a key: a near miss of a real one would train the default under another hash."""
    cfg = compose_cfg("dataset=digits", override)
    key, value = override[1:].split("=")
    with pytest.raises(ConfigError) as caught:
        validate_config(cfg)
    message = str(caught.value)
    assert message.startswith(f"{key}=") and value in message.split(" is invalid")[0]
    assert f"did you mean {meant}?" in message and "\n" not in message


@pytest.mark.parametrize("override", ["+note=ablation-3", "+tag=v2", "+comment=rerun", "+owner=lab"])
def test_a_free_annotation_passes(compose_cfg, override):
    validate_config(compose_cfg("dataset=digits", override))


def test_a_refused_key_shows_its_value_as_typed_never_resolved(compose_cfg, monkeypatch):
    monkeypatch.setenv("NORMLAB_TEST_SECRET", "s3cr3t-value")
    cfg = compose_cfg("dataset=digits", "+norm_group=${oc.env:NORMLAB_TEST_SECRET}")
    with pytest.raises(ConfigError) as caught:
        validate_config(cfg)
    assert "s3cr3t-value" not in str(caught.value) and "${oc.env:NORMLAB_TEST_SECRET}" in str(caught.value)


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"max_epochs": 3}, "trainer.max_epochs=3 is invalid: it follows epochs=1"),
        ({"max_steps": 10}, "trainer.max_steps=10 is invalid: normlab records every run whole; use epochs=N"),
        (
            {"fast_dev_run": True},
            "trainer.fast_dev_run=True is invalid: normlab records every run whole; use debug=fast",
        ),
        ({"limit_train_batches": 0.5}, "trainer.limit_train_batches=0.5 is invalid"),
        (
            {"overfit_batches": 2},
            "trainer.overfit_batches=2 is invalid: normlab records every run whole; use debug=overfit",
        ),
        ({"accumulate_grad_batches": 4}, "trainer.accumulate_grad_batches=4 is invalid"),
    ],
)
def test_a_trainer_key_that_changes_what_is_trained_is_refused(trainer, message):
    """The record names the run's epochs and batch; a trainer key that trains less would be counted as more."""
    cfg = OmegaConf.create({**GOOD, "trainer": {"max_epochs": 1, **trainer}})
    with pytest.raises(ConfigError) as caught:
        validate_config(cfg)
    assert str(caught.value).startswith(message) and "\n" not in str(caught.value)


def test_every_precision_allowed_is_one_lightning_takes():
    """PRECISIONS is typed here (Lightning keeps its list private): the two must agree."""
    from typing import get_args

    from lightning_fabric.connector import _PRECISION_INPUT_INT, _PRECISION_INPUT_STR, _PRECISION_INPUT_STR_ALIAS

    from src.training.validation import PRECISIONS

    lightning = {
        *get_args(_PRECISION_INPUT_STR),
        *get_args(_PRECISION_INPUT_STR_ALIAS),
        *get_args(_PRECISION_INPUT_INT),
    }
    assert set(PRECISIONS) == lightning


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["dataset.split_seed=abc"], "dataset.split_seed='abc' is invalid: it must be an integer"),
        (["dataset.eval_batch_size=0"], "dataset.eval_batch_size=0 is invalid: it must be an integer >= 1"),
        (["model.widths=[8,-16]"], "model.widths=[8, -16] is invalid: give one integer >= 1 per stage"),
        (["+model.foo=2"], "model.foo=2 is invalid: SmallCNN takes no 'foo'; its config keys are widths"),
        (["+dataset.foo=1"], "dataset.foo=1 is invalid: DigitsDataModule takes no 'foo'; its config keys are"),
        (["+norm.layer.foo=1"], "norm.layer.foo=1 is invalid: BatchNorm2d takes no 'foo'"),
        (["norm=gn", "+norm.foo=3"], "norm.foo=3 is invalid: Normalization takes no 'foo'"),
        (["optim/schedule=step", "optim.schedule.gamma=-1"], "optim.schedule gives -1 at 50% of training"),
        (["optim.optimizer.nesterov=true", "optim.optimizer.momentum=0"], "optim.optimizer is invalid: Nesterov"),
    ],
)
def test_a_value_only_its_class_can_judge_fails_before_the_run(compose_cfg, overrides, message):
    """The preflight (src/training/preflight.py) builds data, network, learning-rate rule and optimizer."""
    from src.training.preflight import first_unbuildable

    fast = ["dataset=digits", "model.widths=[8,16]", "logger=none", "trainer.accelerator=cpu", "epochs=1", "batch=16"]
    good = compose_cfg(*fast)
    assert first_unbuildable([good]) is None
    found = first_unbuildable([good, compose_cfg(*fast, *overrides)])
    assert found is not None and found[0] == 1
    assert found[1].startswith(message) and "\n" not in found[1], found[1]


def test_debug_modes_may_limit_batches_and_ddp_beyond_the_cores_warns(caplog):
    validate_config(OmegaConf.create({**GOOD, "debug": "fast", "trainer": {"max_epochs": 1, "limit_train_batches": 5}}))
    many = {"max_epochs": 1, "accelerator": "cpu", "devices": 64}
    with caplog.at_level("WARNING"):
        validate_config(OmegaConf.create({**GOOD, "trainer": many}))
    assert "trainer.devices=64 on a CPU with" in caplog.text and "64 DDP processes" in caplog.text


def test_a_sweep_with_a_bad_value_fails_before_its_first_job(tmp_path):
    """-m batch=0,32: one line naming the job and the value, exit 2, no sweep directory."""
    from .conftest import run_train

    result = run_train(
        "-m", "batch=0,32", "dataset=digits", "logger=none", f"hydra.sweep.dir={tmp_path / 'sweep'}", cwd=tmp_path
    )
    assert result.returncode == 2, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert lines == [
        "error: batch=0 is invalid: it must be an integer >= 1 (the per-device batch size) "
        "(job #0: batch=0 dataset=digits logger=none); nothing was trained"
    ]
    assert not (tmp_path / "sweep").exists()


def test_a_single_run_with_a_bad_value_writes_no_record(tmp_path):
    from .conftest import run_train

    result = run_train(
        "compile=maybe", "dataset=digits", "logger=none", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path
    )
    assert result.returncode == 2
    assert "error: compile='maybe' is invalid: it must be true or false; nothing was trained" in result.stderr
    assert not (tmp_path / "run" / "result.json").exists()


def test_a_run_that_trained_fewer_epochs_than_its_config_is_not_completed():
    from src.run.lifecycle import completed
    from src.run.records import RunRecord

    record = RunRecord(epochs=16)
    completed(record, {"timing": {"epochs_completed": 3}, "metrics": {"test_error": 50.0}})
    assert record.status == "failed" and record.error.startswith("trained 3 of the 16 epochs its config names")
    whole = RunRecord(epochs=16)
    completed(whole, {"timing": {"epochs_completed": 16}})
    assert whole.status == "completed"


def test_joblib_n_jobs_zero_and_a_gpu_trainer_without_a_gpu_fail_in_one_line(tmp_path):
    from .conftest import run_train

    zero = run_train("-m", "hydra/launcher=parallel", "hydra.launcher.n_jobs=0", "dataset=digits", cwd=tmp_path)
    assert zero.returncode == 2
    assert "error: hydra.launcher.n_jobs=0 is invalid: the jobs (or packs) at a time" in zero.stderr
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    gpu = run_train("trainer=gpu", "dataset=digits", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert gpu.returncode == 2 and "sees no GPU; use trainer=cpu, or install a CUDA build" in gpu.stderr


def test_ckpt_path_resumes_from_a_named_checkpoint_and_a_missing_one_fails_in_one_line(
    compose_cfg, tmp_path, monkeypatch
):
    import shutil

    from src.training import module
    from src.training.single import train

    base = ("dataset=digits", "epochs=2", "logger=none", "trainer.accelerator=cpu")
    from .conftest import killed_at_second_epoch

    with killed_at_second_epoch(monkeypatch, module.Classifier):
        train(compose_cfg(*base), tmp_path / "first")
    saved = tmp_path / "saved.ckpt"
    shutil.copy(tmp_path / "first" / "checkpoints" / "last.ckpt", saved)
    record = train(compose_cfg(*base, f"ckpt_path={saved}"), tmp_path / "second")
    assert record["status"] == "completed" and record["timing"]["resumed_from_epoch"] == 1
    with pytest.raises(ConfigError, match=r"^ckpt_path='nothere.ckpt' is invalid: no such file; give a Lightning"):
        validate_config(OmegaConf.create({**GOOD, "ckpt_path": "nothere.ckpt"}))
