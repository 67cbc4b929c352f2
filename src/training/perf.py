"""Speed: compiled training steps, one GPU per parallel job, memory accounting, device warnings."""

from __future__ import annotations

import logging
from pathlib import Path

import psutil
import torch
from torch import nn

log = logging.getLogger(__name__)


def compile_for_training(net: nn.Module, mode: str | None) -> nn.Module:
    """``torch.compile`` with static shapes (every training batch has the same shape because the last
    partial batch is dropped). ``mode="reduce-overhead"`` adds CUDA graphs on a GPU. The compiled
    module shares its parameters with ``net``; evaluation keeps using ``net`` eagerly, so partial
    evaluation batches never trigger a recompile."""
    return torch.compile(net, mode=mode, dynamic=False)


def training_device(accelerator: object) -> torch.device:
    """The device a run with ``trainer.accelerator`` trains on: CUDA for ``gpu``/``cuda``, and for ``auto``
    when a GPU is visible; else the CPU (the one rule of the launcher, the probe and the fused step)."""
    on_gpu = str(accelerator) in ("gpu", "cuda") or (str(accelerator) == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if on_gpu else "cpu")


def gpu_for_job(job_number: int, devices: object) -> list[int] | None:
    """The GPU a job of a parallel sweep should use: job number modulo the visible GPUs.

    Only when the trainer asks for one device and several are visible; otherwise ``None`` (keep the
    trainer's own choice). Local Hydra launchers would otherwise put every job on GPU 0.
    """
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count < 2 or devices not in (1, "1", "auto"):
        return None
    return [job_number % count]


def current_memory_mb(device: torch.device) -> float:
    """Memory in use now: allocated tensors on a GPU, the resident set size of this process on a CPU
    (``psutil``: the same number on Linux, macOS and Windows)."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    return psutil.Process().memory_info().rss / 2**20


def reset_peak_memory(device: torch.device) -> None:
    """Start a run's peak afresh (the CUDA allocator's peak is per process, and a sequential multirun
    trains many runs in one process)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)


_warned: set[str] = set()
NVIDIA_DEVICE = Path("/dev/nvidia0")


def device_mismatch(device: torch.device, accelerator: object) -> str | None:
    """Why a run on ``device`` may not be where the user expects, or ``None``: a machine with an NVIDIA
    GPU and a CPU-only torch build, or a CUDA torch that sees a GPU while the run trains on the CPU."""
    if device.type != "cpu":
        return None
    if torch.cuda.is_available():
        return (
            f"a GPU is visible ({torch.cuda.get_device_name(0)}) but this run trains on the CPU "
            f"(trainer.accelerator={accelerator}); use trainer=gpu to train on it"
        )
    if torch.version.cuda is None and NVIDIA_DEVICE.exists():
        return (
            f"this machine has an NVIDIA GPU but torch {torch.__version__} is a CPU-only build, so runs "
            f"train on the CPU; install a CUDA build (docs/gpu.md)"
        )
    return None


def warn_device_mismatch(device: torch.device, accelerator: object) -> None:
    """Log :func:`device_mismatch`'s reason once per process."""
    reason = device_mismatch(device, accelerator)
    if reason and reason not in _warned:
        _warned.add(reason)
        log.warning(reason)
