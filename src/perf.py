"""Speed: compiled training steps, one GPU per parallel job, memory accounting."""

from __future__ import annotations

import logging
import resource

import torch
from torch import nn

log = logging.getLogger(__name__)


def compile_for_training(net: nn.Module, mode: str | None) -> nn.Module:
    """``torch.compile`` with static shapes (every training batch has the same shape because the last
    partial batch is dropped). ``mode="reduce-overhead"`` adds CUDA graphs on a GPU. The compiled
    module shares its parameters with ``net``; evaluation keeps using ``net`` eagerly, so partial
    evaluation batches never trigger a recompile."""
    return torch.compile(net, mode=mode, dynamic=False)


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
    """Memory in use now: allocated tensors on a GPU, resident set size of this process on a CPU."""
    if device.type == "cuda":
        return torch.cuda.memory_allocated(device) / 2**20
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * resource.getpagesize() / 2**20


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of the run: the CUDA allocator's peak on a GPU, the process's peak RSS on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10
