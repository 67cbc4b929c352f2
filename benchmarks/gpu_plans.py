"""What each step of ``make gpu-check`` runs: the GPU form (:data:`GPU_PLAN`, at most about 8 minutes on one GPU)
and its reduced CPU form (:data:`CPU_PLAN`, what the test runs), with each step's time limit."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

TINY_CIFAR = Path(__file__).resolve().parents[1] / "tests" / "data" / "cifar10_tiny.npz"


@dataclass(frozen=True)
class Plan:
    """What each step runs: the GPU form, or its reduced CPU form."""

    device: str  # the device type every run record must name: cuda | cpu
    trainer: str  # trainer config group option
    data: tuple[str, ...]  # dataset overrides of the short runs
    model: str
    epochs: int
    sane_error: float  # a short run must reach a test error below this (chance is 90 % on CIFAR-10)
    sweep_sane_error: float  # the same for the small_batch sweep's runs
    parallel_jobs: int
    bench_args: tuple[str, ...]
    packing_args: tuple[str, ...]
    sweep_data: tuple[str, ...]  # dataset overrides of the small_batch sweep
    sweep_model: tuple[str, ...]
    sweep_epochs: int
    sweep_compile: bool
    fused_args: tuple[str, ...] = ()  # benchmarks.fused
    exactness_args: tuple[str, ...] = ()  # pytest selection of tests/test_fused_step.py
    fused_seeds: int = 8  # the fused packed sweep's seeds (one pack, its size probed)
    limits: dict[str, int] = field(default_factory=dict)  # seconds per step


GPU_PLAN = Plan(
    device="cuda",
    trainer="gpu",
    data=("dataset=cifar10_jpeg", "dataset.train_size=10000"),
    model="resnet20",
    epochs=2,
    sane_error=75.0,
    sweep_sane_error=80.0,
    parallel_jobs=8,
    bench_args=("--steps", "100", "--batches", "2,32,128", "--compile"),
    packing_args=("--models", "resnet20", "--min-seconds", "20", "--max-seconds", "100", "--warmup", "1"),
    sweep_data=("dataset.train_size=10000",),
    sweep_model=(),
    sweep_epochs=2,
    sweep_compile=False,
    fused_args=("--ks", "1,8,64", "--batches", "2,32", "--max-seconds", "25", "--model", "resnet8", "--norm", "gn"),
    exactness_args=("-k", "each_member and (eager or graph) or nesterov or single_run_steps"),
    fused_seeds=16,
    limits={
        "exactness": 150,
        "fused": 200,
        "fused_sweep": 150,
        "single_eager": 120,
        "single_compiled": 180,
        "parallel": 180,
        "bench": 240,
        "packing": 180,
        "small_batch": 180,
    },
)
CPU_PLAN = Plan(
    device="cpu",
    trainer="cpu",
    data=("dataset=npz", f"dataset.path={TINY_CIFAR}", "dataset.augment=crop_flip"),
    model="small_cnn",
    epochs=2,
    sane_error=89.0,
    sweep_sane_error=95.0,  # a few dozen steps on 450 tiny images: the CPU form checks the path, not learning
    parallel_jobs=2,
    bench_args=("--steps", "3", "--batches", "2", "--no-compile"),
    packing_args=(
        "--steps",
        "3",
        "--min-rounds",
        "2",
        "--min-seconds",
        "0",
        "--max-seconds",
        "0",
        "--tolerance",
        "inf",  # two rounds are too few to tell the undisturbed state: count every block
        "--warmup",
        "0",
        "--models",
        "resnet8",
        "--norms",
        "bn",
        "--batches",
        "2",
        "--ks",
        "1,2",
    ),
    sweep_data=("dataset=npz", f"dataset.path={TINY_CIFAR}", "dataset.augment=crop_flip"),
    sweep_model=("model=resnet8",),
    sweep_epochs=1,
    sweep_compile=False,
    fused_args=(
        "--ks",
        "2",
        "--batches",
        "2",
        "--steps",
        "4",
        "--max-seconds",
        "3",
        "--min-rounds",
        "2",
        "--mode",
        "eager",
    ),
    exactness_args=("-k", "each_member and gn-eager"),
    fused_seeds=2,
    limits={
        "exactness": 120,
        "fused": 120,
        "fused_sweep": 180,
        "single_eager": 120,
        "single_compiled": 240,
        "parallel": 180,
        "bench": 180,
        "packing": 180,
        "small_batch": 240,
    },
)
