"""The pack size this machine should use for a cell, measured (``hydra.launcher.size=probe``).

For K = 1, 2, 4, … up to the group's size and :data:`MOST`, the probe builds the cell's network as its
runs would (:func:`src.training.experiment.build_model`), stacks K copies (:class:`src.sweep.pack.PackedNet`)
and times ``steps`` fused training steps (:class:`src.training.fused_step.FusedSGDStep`, in the mode the
runs will use; eager where that would compile, since compiling each K costs more than the probe) on random
data of the cell's shape, after a warmup (a CUDA graph's capture included). A member's throughput is
K ÷ t(K). K grows while it gains at least :data:`GAIN` over the best so far; the probe stops at the first
K that does not, at an out-of-memory error, or when its time budget is spent. The table it measured is
logged, so a sweep's log says why it packed as it did.
"""

from __future__ import annotations

import copy
import logging
import time
from dataclasses import dataclass

import torch
from omegaconf import DictConfig

from src.sweep.pack.network import PackedNet
from src.training.experiment import build_model
from src.training.fused_step import WARMUP_STEPS, FusedSGDStep, SGDSettings, mode_for
from src.training.perf import training_device
from src.training.process import run_settings

log = logging.getLogger(__name__)
MOST = 64  # the largest pack the probe tries
GAIN = 1.10  # a larger pack must train ≥ 10 % more member steps per second than the best smaller one
BUDGET_S = 30.0  # the probe's time for one cell


@dataclass(frozen=True)
class ProbeRow:
    """One measured pack size."""

    k: int
    step_ms: float
    member_steps_per_s: float


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_pack(net: torch.nn.Module, k: int, shape: tuple[int, ...], classes: int, mode: str, steps: int) -> float:
    """Seconds per fused step of K stacked copies of ``net`` on random data of ``shape`` (N, C, H, W)."""
    device = next(net.parameters()).device
    packed = PackedNet([copy.deepcopy(net) for _ in range(k)]).to(device).train()
    step = FusedSGDStep(packed, list(packed.parameters()), SGDSettings(momentum=0.9), mode=mode)
    images = torch.randn(k, *shape, device=device)
    labels = torch.randint(0, classes, (k, shape[0]), device=device)
    lr = torch.full((k,), 1e-3, device=device)
    for _ in range(WARMUP_STEPS + 1):
        step(images, labels, lr)
    _synchronize(device)
    started = time.perf_counter()
    for _ in range(steps):
        step(images, labels, lr)
    _synchronize(device)
    return (time.perf_counter() - started) / steps


@dataclass(frozen=True)
class Probe:
    """What the probe measured for one cell, and the pack size it chose."""

    k: int
    rows: list[ProbeRow]
    steps_per_epoch: int
    epochs: int

    def pack_seconds(self) -> float:
        """The estimated training time of one pack of :attr:`k` (steps × the measured step; no evaluation)."""
        step_ms = next((r.step_ms for r in self.rows if r.k == self.k), float("nan"))
        return step_ms / 1e3 * self.steps_per_epoch * self.epochs


def probe_cell(cfg: DictConfig, most: int, steps: int = 5, budget_s: float = BUDGET_S) -> Probe:
    """:func:`probe_pack_size` with the cell's steps per epoch and epochs (for a time estimate)."""
    k, rows, steps_per_epoch = _probe(cfg, most, steps, budget_s)
    return Probe(k, rows, steps_per_epoch, int(cfg.epochs))


def probe_pack_size(
    cfg: DictConfig, most: int, steps: int = 5, budget_s: float = BUDGET_S
) -> tuple[int, list[ProbeRow]]:
    """The pack size for ``cfg``'s cell (at most ``most``, the runs there are to pack) and the rows measured."""
    k, rows, _ = _probe(cfg, most, steps, budget_s)
    return k, rows


def _probe(cfg: DictConfig, most: int, steps: int, budget_s: float) -> tuple[int, list[ProbeRow], int]:
    device = training_device(cfg.trainer.get("accelerator", "auto"))
    with run_settings(int(cfg.seed), cfg.get("cpu_threads")):
        datamodule, _, net = build_model(cfg)
    net = net.to(device)
    mode = mode_for(cfg.get("fused_step", "off"), device, net) or "eager"
    mode = "eager" if mode == "compile" else mode
    shape = (int(cfg.batch), *datamodule.input_shape)
    rows: list[ProbeRow] = []
    best: ProbeRow | None = None
    started = time.perf_counter()
    k = 1
    while k <= min(most, MOST):
        try:
            seconds = time_pack(net, k, shape, datamodule.num_classes, mode, steps)
        except torch.cuda.OutOfMemoryError:
            log.info("pack-size probe: K = %d does not fit in the GPU's memory", k)
            break
        row = ProbeRow(k, round(1e3 * seconds, 3), round(k / seconds, 1))
        rows.append(row)
        if best is not None and row.member_steps_per_s < GAIN * best.member_steps_per_s:
            break
        best = row
        if time.perf_counter() - started > budget_s:
            break
        k *= 2
    chosen = best.k if best is not None else 1
    table = ", ".join(f"K={r.k}: {r.step_ms} ms/step, {r.member_steps_per_s} member steps/s" for r in rows)
    log.info(
        "pack-size probe (%s, %s, batch %d, %s step): %s -> K = %d",
        device,
        cfg.norm.get("name", "?"),
        cfg.batch,
        mode,
        table,
        chosen,
    )
    return chosen, rows, len(datamodule.splits["train"]) // int(cfg.batch)
