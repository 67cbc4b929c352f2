"""Beyond one machine: SLURM through Hydra's submitit launcher, multi-process DDP, and SyncBN semantics.

Everything runs on CPU: DDP with the gloo backend (2 processes), the submitit launcher with its local
executor. The slow tests start real sweeps; the rest check configs, samplers and the rank logic directly.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import pytorch_lightning as pl
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from src.data import DigitsDataModule
from src.data.arrays import EvalShardSampler, ShardedBatchSampler
from src.run.distributed import is_main_process, single_run_argv
from src.run.records import RECORD_FILE
from src.run.resume import CHECKPOINT_DIR, LAST_CHECKPOINT, run_lock
from src.training.checkpointing import AtomicCheckpointIO, last_checkpoint_callback
from src.training.single import train

from .conftest import CONF, PYTHON, ROOT, run_train

FAST = ("dataset=digits", "model.widths=[8,16]", "logger=none", "epochs=1")
DDP_CPU = ("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
DIGITS_TRAIN = 1293  # training images of dataset=digits after its validation split
HAS_SUBMITIT = importlib.util.find_spec("hydra_plugins.hydra_submitit_launcher") is not None
needs_submitit = pytest.mark.skipif(
    not HAS_SUBMITIT, reason="hydra-submitit-launcher is not installed (pip install -e .[slurm])"
)


def records(sweep: Path) -> dict[str, dict]:
    """The run records of a sweep by norm."""
    found = [json.loads(path.read_text()) for path in sorted(sweep.glob(f"*/{RECORD_FILE}"))]
    return {record["norm"]: record for record in found}


# ---------------------------------------------------------------------------------------- ranks
@pytest.mark.parametrize(
    ("environ", "main"),
    [
        ({}, True),
        ({"RANK": "0"}, True),
        ({"RANK": "3", "LOCAL_RANK": "0"}, False),  # torchrun: RANK is global
        ({"LOCAL_RANK": "0", "NODE_RANK": "0"}, True),  # Lightning's main process after it launched the others
        ({"LOCAL_RANK": "1", "SLURM_PROCID": "0"}, False),  # started by Lightning inside a one-task SLURM job
        ({"LOCAL_RANK": "0", "NODE_RANK": "1"}, False),
        ({"SLURM_PROCID": "0"}, True),
        ({"SLURM_PROCID": "2"}, False),  # SLURM started one task per GPU (submitit, tasks_per_node > 1)
    ],
)
def test_the_main_process_is_rank_zero_of_its_launcher(environ, main):
    assert is_main_process(environ) is main


def test_a_ddp_child_process_neither_takes_the_run_lock_nor_writes_the_record(compose_cfg, tmp_path, monkeypatch):
    cfg = compose_cfg(*FAST, "trainer.accelerator=cpu", "batch=64")
    monkeypatch.setenv("LOCAL_RANK", "1")  # what Lightning's DDP launcher gives rank 1
    with run_lock(tmp_path):  # rank 0 holds the lock while it trains
        record = train(cfg, tmp_path)
    assert record["status"] == "completed"
    assert not (tmp_path / RECORD_FILE).exists()


def test_a_multirun_job_gives_ddp_children_its_own_single_run_command_line():
    argv = ["src/train.py", "-m", "--config-dir", "sweeps", "--config-name=demo", "norm=bn,gn", "hydra.sweep.dir=/s"]
    single = single_run_argv(argv, ["norm=gn", "batch=2"], ["hydra.sweep.dir=/s", "hydra.mode=MULTIRUN"])
    assert single == [
        "src/train.py",
        "--config-dir",
        "sweeps",
        "--config-name",
        "demo",
        "hydra.sweep.dir=/s",
        "norm=gn",
        "batch=2",
        "hydra.mode=RUN",
    ]


# ------------------------------------------------------------------------------------- sampling
def test_ddp_training_shards_are_disjoint_full_batches_of_one_permutation_per_epoch():
    data = torch.utils.data.TensorDataset(torch.arange(103))
    for world in (2, 3):
        samplers = [ShardedBatchSampler(data, 8, world, rank, seed=7) for rank in range(world)]
        for epoch in (0, 1):
            for sampler in samplers:
                sampler.set_epoch(epoch)  # Lightning calls it on the loader's sampler every epoch
            batches = [list(sampler) for sampler in samplers]
            assert {len(b) for b in batches} == {len(samplers[0])} == {103 // world // 8}  # same steps on every rank
            assert all(len(batch) == 8 for rank in batches for batch in rank)  # BN normalizes over `batch`
            seen = [i for rank in batches for batch in rank for i in batch]
            assert len(seen) == len(set(seen))  # ranks never share an image within an epoch
            if epoch == 0:
                first = seen
            else:
                assert seen != first  # a new permutation every epoch


def test_ddp_evaluation_counts_every_image_once_with_the_same_number_of_batches_per_rank():
    for size, world, batch in [(144, 2, 500), (360, 2, 100), (11, 2, 5), (7, 3, 2), (3, 3, 500)]:
        data = torch.utils.data.TensorDataset(torch.arange(size))
        shards = [list(EvalShardSampler(data, batch, world, rank)) for rank in range(world)]
        assert len({len(shard) for shard in shards}) == 1  # no rank waits for another
        assert all(0 < len(b) <= batch for shard in shards for b in shard)
        assert sorted(i for shard in shards for b in shard for i in b) == list(range(size))


def test_the_datamodule_shards_by_the_trainers_world_size_and_rank():
    datamodule = DigitsDataModule(name="digits", batch_size=32)
    datamodule.setup("fit")
    single = datamodule.train_dataloader()
    assert len(single) == DIGITS_TRAIN // 32 and not isinstance(single.sampler, ShardedBatchSampler)
    loaders = []
    for rank in (0, 1):
        datamodule.trainer = SimpleNamespace(world_size=2, global_rank=rank, training=True)
        loader = datamodule.train_dataloader()
        assert isinstance(loader.sampler, ShardedBatchSampler)  # a DistributedSampler: Lightning leaves it alone
        assert len(loader) == DIGITS_TRAIN // 2 // 32
        images, labels = next(iter(loader))
        assert images.shape == (32, 1, 8, 8) and labels.shape == (32,)
        loaders.append((loader, datamodule.val_dataloader(), datamodule.test_dataloader()))
    for split, size in ((1, 144), (2, 360)):
        counted = sum(len(labels) for rank in loaders for _, labels in rank[split])
        assert counted == size


# -------------------------------------------------------------------------------------- configs
def test_the_ddp_trainer_config(compose_cfg):
    cfg = compose_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.devices=2")
    assert cfg.trainer.strategy._target_ == "pytorch_lightning.strategies.DDPStrategy"
    assert cfg.trainer.strategy.find_unused_parameters is False
    assert cfg.trainer.use_distributed_sampler is False  # the datamodule shards itself
    assert cfg.trainer.sync_batchnorm is False  # norm=bn stays per-device BN; SyncBN is norm=syncbn
    trainer = instantiate(cfg.trainer, logger=False)
    assert trainer.world_size == 2 and type(trainer.strategy).__name__ == "DDPStrategy"


@needs_submitit
def test_the_slurm_launcher_config_becomes_the_sbatch_script(tmp_path, monkeypatch):
    import submitit
    from hydra import compose, initialize_config_dir
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    overrides = [
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.qos=high",
        "hydra.launcher.account=lab",
        "hydra.launcher.tasks_per_node=4",
        "+hydra.launcher.additional_parameters.mail-type=END",
    ]
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("train", overrides=overrides, return_hydra_config=True)
    params = OmegaConf.to_container(cfg.hydra.launcher, resolve=True)
    assert params["_target_"].endswith("SlurmLauncher") and params["gpus_per_node"] == 4
    # what hydra_submitit_launcher's SlurmLauncher.launch does with them (submitit needs `srun` to exist)
    (tmp_path / "srun").write_text("#!/bin/sh\nexit 1\n")
    (tmp_path / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    params.pop("_target_")
    executor = submitit.AutoExecutor(
        folder=tmp_path / "%j", cluster="slurm", slurm_max_num_timeout=params.pop("max_num_timeout")
    )
    params.pop("submitit_folder")
    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor.update_parameters(**{key if key in base else f"slurm_{key}": value for key, value in params.items()})
    script = executor._executor._make_submission_file_text("python -m src.train", "uid")
    for line in (
        "--partition=gpu",
        "--qos=high",
        "--account=lab",
        "--mail-type=END",
        "--ntasks-per-node=4",
        "--gpus-per-node=4",
        "--cpus-per-task=8",
        "--mem=32GB",
        "--time=240",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {line}\n" in script
    assert "--gpus-per-task" not in script
    assert executor._executor.max_num_timeout == 20


# ------------------------------------------------------------------------------------- requeue
class _CheckpointSeen(pl.Callback):
    def __init__(self, path: Path) -> None:
        self.path, self.seen = path, []

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.seen.append(self.path.exists())


class _Tiny(pl.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(2, 1)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.layer(batch[0]).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def test_the_last_checkpoint_is_written_at_the_end_of_every_epoch(tmp_path):
    """What a requeued (or killed and rerun) job resumes from: checkpoints/last.ckpt after every epoch."""
    seen = _CheckpointSeen(tmp_path / CHECKPOINT_DIR / LAST_CHECKPOINT)
    trainer = pl.Trainer(
        max_epochs=3,
        callbacks=[last_checkpoint_callback(tmp_path), seen],
        plugins=[AtomicCheckpointIO()],
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    data = torch.utils.data.TensorDataset(torch.randn(8, 2))
    trainer.fit(_Tiny(), torch.utils.data.DataLoader(data, batch_size=4))
    assert seen.seen == [False, True, True]


# ----------------------------------------------------------------------------------- end to end
def syncbn_runs_on_cpu() -> bool:
    return OmegaConf.load(CONF / "norm" / "syncbn.yaml").layer._target_ != "torch.nn.SyncBatchNorm"


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_records_per_device_global_and_statistics_batches(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train("-m", *DDP_CPU, *FAST, "batch=32", "norm=bn,gn", f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    runs = records(sweep)
    assert set(runs) == {"bn", "gn"}
    for norm, statistics in (("bn", 32), ("gn", 1)):
        record = runs[norm]
        assert record["status"] == "completed"
        assert record["batches"] == {
            "per_device": 32,
            "world_size": 2,
            "global_batch": 64,
            "norm_statistics": statistics,
        }
        assert record["lr"] == pytest.approx(0.1 * 64 / 32)  # the learning rate follows the global batch
        assert record["timing"]["train_steps"] == DIGITS_TRAIN // 2 // 32  # each rank steps through its own half
        run_dir = Path(record["run_dir"])
        assert (run_dir / "train_ddp_process_1.log").exists()  # rank 1 ran this job, in this directory
    # rank 1 wrote no record of its own and no directory outside the sweep; both jobs ran (one process group each)
    assert len(list(tmp_path.rglob(RECORD_FILE))) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep"]


@pytest.mark.slow
@pytest.mark.skipif(
    not syncbn_runs_on_cpu() and torch.cuda.device_count() < 2,
    reason="norm=syncbn is torch.nn.SyncBatchNorm, which synchronizes only GPU tensors: DDP on CPU cannot run it",
)
def test_ddp_with_syncbn_normalizes_over_the_global_batch(tmp_path):
    devices = ("trainer=ddp", "trainer.accelerator=gpu", "trainer.devices=2") if not syncbn_runs_on_cpu() else DDP_CPU
    result = run_train(*devices, *FAST, "batch=16", "norm=syncbn", f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((tmp_path / "run" / RECORD_FILE).read_text())
    assert record["status"] == "completed"
    assert record["batches"] == {"per_device": 16, "world_size": 2, "global_batch": 32, "norm_statistics": 32}


@pytest.mark.slow
def test_a_killed_ddp_run_resumes_on_every_rank_from_rank_zeros_checkpoint(tmp_path):
    run_dir, epochs = tmp_path / "run", 12
    args = (*DDP_CPU, *FAST[:-1], "batch=16", f"epochs={epochs}", f"hydra.run.dir={run_dir}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [PYTHON, "-m", "src.train", *args]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, start_new_session=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and not (run_dir / "checkpoints/last.ckpt").exists():
            time.sleep(0.05)
        assert (run_dir / "checkpoints/last.ckpt").exists(), "no checkpoints/last.ckpt was written during training"
    finally:
        os.killpg(process.pid, signal.SIGKILL)  # both ranks, mid-training
        process.wait()
    assert json.loads((run_dir / RECORD_FILE).read_text())["status"] == "running"

    result = run_train(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads((run_dir / RECORD_FILE).read_text())
    assert record["status"] == "completed" and 1 <= record["timing"]["resumed_from_epoch"] < epochs
    # both ranks resumed from the same epoch: together they took exactly the steps of an uninterrupted run
    assert record["timing"]["train_steps"] == epochs * (DIGITS_TRAIN // 2 // 16)
    assert "resuming" in (run_dir / "train_ddp_process_1.log").read_text()


@pytest.mark.slow
@needs_submitit
def test_a_sweep_through_the_submitit_launcher_completes_both_runs(tmp_path):
    sweep = tmp_path / "sweep"
    result = run_train(
        "-m", "hydra/launcher=submitit_local", "norm=bn,gn", *FAST, f"hydra.sweep.dir={sweep}", cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr[-3000:]
    runs = records(sweep)
    assert set(runs) == {"bn", "gn"} and all(r["status"] == "completed" for r in runs.values())
    assert list(sweep.glob(".submitit/*/*_submitted.pkl"))  # the jobs went through submitit


def _job_processes(sweep: Path) -> list[int]:
    """The processes running this sweep's submitit jobs: the children of each job's controller, whose pid
    is the local job id (the folder name under .submitit/)."""
    pids = []
    for folder in sweep.glob(".submitit/*"):
        if folder.name.isdigit():
            children = Path(f"/proc/{folder.name}/task/{folder.name}/children")
            if children.exists():
                pids += [int(pid) for pid in children.read_text().split()]
    return pids


@pytest.mark.slow
@needs_submitit
def test_a_preempted_submitit_job_is_requeued_and_resumes_from_its_last_checkpoint(tmp_path):
    sweep = tmp_path / "sweep"
    epochs = 20  # short epochs (40 steps), many of them: the signal lands mid-training, not after it
    args = ("-m", "hydra/launcher=submitit_local", "norm=bn", "batch=32", *FAST[:-1], f"epochs={epochs}")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [PYTHON, "-m", "src.train", *args, f"hydra.sweep.dir={sweep}"]
    process = subprocess.Popen(command, cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None and not list(sweep.glob("*/checkpoints/last.ckpt")):
            time.sleep(0.1)
        assert list(sweep.glob("*/checkpoints/last.ckpt")), "no checkpoints/last.ckpt was written during training"
        jobs = _job_processes(sweep)
        assert len(jobs) == 1
        os.kill(jobs[0], signal.SIGUSR2)  # what SLURM sends before a time limit or a preemption
        _, stderr = process.communicate(timeout=420)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr[-3000:].decode()
    logs = "".join(path.read_text() for path in sweep.glob(".submitit/*/*_0_log.out"))
    assert "Caught signal SIGUSR2" in logs and "Requeued job" in logs
    record = records(sweep)["bn"]
    assert record["status"] == "completed"
    assert 1 <= record["timing"]["resumed_from_epoch"] < epochs  # from a checkpoint written mid-training
    assert record["timing"]["epochs_completed"] == epochs
    assert not (Path(record["run_dir"]) / "checkpoints").exists()
