"""``logger=tensorboard`` (issue 17, point 4): event files in the study's folder, one run per overrides."""

from __future__ import annotations

import json

import pytest

from src.run.records import RECORD_FILE

from .conftest import run_train

pytest.importorskip("tensorboard")


def scalars(log_dir) -> dict[str, list[float]]:
    """Every scalar of the event files in ``log_dir``, read back with TensorBoard's own reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    values: dict[str, list[float]] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        for tag in accumulator.Tags()["scalars"]:
            values.setdefault(tag, []).extend(event.value for event in accumulator.Scalars(tag))
    return values


def hparams(log_dir) -> dict[str, object]:
    """The HParams of the event files in ``log_dir`` (their session start), read with TensorBoard's reader."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    found: dict[str, object] = {}
    for path in sorted(log_dir.glob("events.out.tfevents.*")):
        accumulator = EventAccumulator(str(path))
        accumulator.Reload()
        try:
            contents = accumulator.PluginTagToContent("hparams").values()
        except KeyError:  # a file without HParams (Lightning writes one per fit and test)
            continue
        for content in contents:
            data = plugin_data_pb2.HParamsPluginData.FromString(content)
            if data.HasField("session_start_info"):
                for key, value in data.session_start_info.hparams.items():
                    found[key] = value.WhichOneof("kind") and getattr(value, value.WhichOneof("kind"))
    return found


def test_tensorboard_events_land_in_the_study_folder_named_by_the_overrides(tmp_path):
    sweep = tmp_path / "multirun" / "tb_study"
    result = run_train(
        "-m",
        "logger=[csv,tensorboard]",
        "norm=bn,gn",
        "debug=fast",
        "dataset=digits",
        "epochs=2",
        "trainer.max_epochs=2",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = sorted(p.name for p in (sweep / "tensorboard").iterdir())
    assert runs == [
        "dataset=digits,epochs=2,norm=bn,trainer.max_epochs=2",
        "dataset=digits,epochs=2,norm=gn,trainer.max_epochs=2",
    ]
    for name in runs:
        record = json.loads((sweep / name / RECORD_FILE).read_text())
        assert (sweep / name / "metrics.csv").exists()  # the CSV logger still writes beside it
        logged = scalars(sweep / "tensorboard" / name)
        assert logged["val/error"] == pytest.approx([point["val_error"] for point in record["curve"]])
        assert logged["train/loss"] == pytest.approx([point["train_loss"] for point in record["curve"]], rel=1e-6)
        assert logged["test/error"] == pytest.approx([record["metrics"]["test_error"]])
        # the HParams tab compares runs: identity and lr as hparams, the final metrics beside them
        params = hparams(sweep / "tensorboard" / name)
        assert params["norm"] == record["norm"] and params["batch"] == record["batch"] and params["model"]
        assert params["lr"] == pytest.approx(record["lr"]) and params["epochs"] == 2
        assert logged["hparams/test_error"] == pytest.approx([record["metrics"]["test_error"]])
        saved = (sweep / "tensorboard" / name / "hparams.yaml").read_text()
        assert f"norm: {record['norm']}" in saved


def test_a_single_run_is_named_by_its_overrides_and_dated(tmp_path):
    from hydra import compose, initialize_config_dir

    from src.training.loggers import TensorBoardLogger

    from .conftest import CONF

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=["logger=tensorboard"])
    assert cfg.logger.tensorboard._target_ == "src.training.loggers.TensorBoardLogger"
    logger = TensorBoardLogger(save_dir=str(tmp_path / "outputs" / "s" / "2026-01-01_00-00-00"))
    assert logger.log_dir == str(tmp_path / "outputs" / "s" / "tensorboard" / "default" / "2026-01-01_00-00-00")
