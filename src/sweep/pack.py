"""Packed runs: the K seeds of one configuration trained as one model in one process.

At batch 2 a step costs mostly per-operation overhead, so K runs that differ only in their seed train
for little more than the price of one when every operation does the work of all K at once. Each member
is built exactly as its unpacked run (:func:`src.training.experiment.build_model` under its own seed); the K
networks' parameters and buffers are stacked along a new leading axis and the step runs the network
once under :func:`torch.func.vmap` (convolutions become grouped convolutions, norms keep per-member
statistics). Nothing is shared between members but the operations:

- initialisation: each member's network is built under its own seed, as unpacked;
- data order and augmentation: each member draws from its own copy of the global RNG state
  (:class:`MemberRng`), swapped in around everything that draws (its loaders' iterators, its
  augmentation), so it sees the batches its unpacked run sees, in the same order;
- norm statistics: per member (vmap batches every statistic, and every running buffer, per member);
- optimizer state: one SGD over the stacked parameters is per member, because SGD (momentum, weight
  decay) is elementwise and the members of one configuration share the learning rate and schedule;
  the loss is the sum of the members' losses, whose gradient is each member's own gradient;
- divergence: a member whose loss is no longer finite is recorded as diverged (the unpacked run's
  message) and leaves the sum; the others go on (training stops when none is left).

Norms that vmap cannot batch are refused with one line (:class:`PackRefused`); the launcher
(:mod:`src.sweep.launcher`) then trains those runs one by one, unpacked.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import random
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap
from torchmetrics.classification import MulticlassAccuracy

from src.norms import BatchRenorm2d, describe_norm_layers
from src.run import lifecycle
from src.run.atomic import write_text_atomic
from src.run.config_keys import config_hash
from src.run.lifecycle import RunSpec
from src.run.provenance import git_commit
from src.run.resume import CHECKPOINT_DIR, Action
from src.training.callbacks import MemoryMonitor, TrainTimer
from src.training.checkpointing import AtomicCheckpointIO, LastCheckpoint
from src.training.experiment import (
    batch_sizes,
    build,
    build_model,
    lr_arguments,
    result_fields,
    resumed_epoch,
)
from src.training.module import lr_rule, optimizer_and_schedule
from src.training.process import run_settings
from src.training.single import train
from src.training.validation import validate_config

log = logging.getLogger(__name__)

PACKS_DIR = ".packs"  # beside the run directories: one checkpoint directory per pack
DIVERGENCE_EVERY = 25  # steps between loss checks, as src.training.callbacks.DivergenceGuard
#: norms vmap cannot batch, and why (one line each); a norm not listed is also refused if the packed
#: probe forward fails (:func:`check_packable`)
REFUSED_NORMS = {
    "spectral": "spectral norm's power iteration updates its vectors with out= operations, which vmap cannot batch",
}


class PackRefused(ValueError):
    """These runs cannot be packed (one line naming the norm or the setting, and why)."""


# ----------------------------------------------------------------------------------------- members
def _numpy_state() -> tuple[Any, ...]:
    """NumPy's global RNG state as plain Python values (a checkpoint loads it without pickled arrays)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return (name, keys.tolist(), position, has_gauss, cached)


class MemberRng:
    """One member's copy of the process-wide RNG states (Python, NumPy, torch CPU and CUDA).

    The unpacked run draws its data order and augmentation from the global RNG, seeded with its seed;
    a packed member does the same inside :meth:`active`, which swaps its states in and, on exit, saves
    them and restores the states that were there before.
    """

    def __init__(self) -> None:
        self.state = self.capture()

    @staticmethod
    def capture() -> dict[str, Any]:
        return {
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    @staticmethod
    def restore(state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    @contextmanager
    def active(self) -> Iterator[None]:
        outside = self.capture()
        self.restore(self.state)
        try:
            yield
        finally:
            self.state = self.capture()
            self.restore(outside)


@dataclass
class BuiltMember:
    """A member built as its unpacked run would be: data, norm, network, and its RNG after building."""

    member: RunSpec
    datamodule: pl.LightningDataModule
    norm: Any
    net: nn.Module
    rng: MemberRng


def build_member(member: RunSpec) -> BuiltMember:
    """Build ``member`` under its seed exactly as :func:`src.training.experiment.build_experiment` does; its RNG
    state after building is what its unpacked run's training starts from."""
    cfg = member.cfg
    validate_config(cfg)
    with run_settings(cfg.seed, cfg.get("cpu_threads")):
        datamodule, norm, net = build_model(cfg)
        rng = MemberRng()
    return BuiltMember(member, datamodule, norm, net, rng)


# ---------------------------------------------------------------------------------- packed network
def _mangle(name: str) -> str:
    return name.replace(".", "__")


class PackedNet(nn.Module):
    """K networks of one architecture as one module: every parameter and buffer stacked along a new
    leading axis of size K, the forward one :func:`torch.func.vmap` of the template network.

    ``forward(x)`` takes (K, N, C, H, W), one batch per member, and returns (K, N, classes).
    """

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        if len(nets) < 1:
            raise ValueError("a pack needs at least one network")
        self.size = len(nets)
        self.__dict__["template"] = copy.deepcopy(nets[0])  # stateless use only: not a submodule
        params, buffers = stack_module_state(list(nets))
        self.param_names = list(params)
        self.buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_mangle(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_mangle(name), value.detach().clone())
        self._renorms = [m for m in self.template.modules() if isinstance(m, BatchRenorm2d)]
        self._renorm_counters = [
            _mangle(f"{name}.num_batches_tracked")
            for name, m in self.template.named_modules()
            if isinstance(m, BatchRenorm2d)
        ]

    def state(self) -> dict[str, torch.Tensor]:
        """The stacked parameters and buffers by the template's names (what functional_call takes)."""
        named = {name: getattr(self, _mangle(name)) for name in self.param_names}
        named.update({name: getattr(self, _mangle(name)) for name in self.buffer_names})
        return named

    def forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        template = self.template
        if template.training != self.training:  # Lightning restores modes by flag, not through train()
            template.train(self.training)
        for module, counter in zip(self._renorms, self._renorm_counters, strict=True):
            module.packed_step = int(getattr(self, counter)[0])  # members step in lockstep

        def one(state: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
            return functional_call(template, state, (images,))

        return vmap(one, in_dims=(0, None if shared_input else 0), randomness="error")(self.state(), x)

    @torch.no_grad()
    def unpack(self, index: int, net: nn.Module) -> nn.Module:
        """Copy member ``index``'s parameters and buffers into ``net`` (a network of the template's
        architecture, e.g. the member's own) and return it."""
        for name in self.param_names:
            net.get_parameter(name).copy_(getattr(self, _mangle(name))[index])
        for name in self.buffer_names:
            net.get_buffer(name).copy_(getattr(self, _mangle(name))[index])
        return net


def check_packable(members: Sequence[BuiltMember]) -> None:
    """Raise :class:`PackRefused` (one line naming the norm or setting) when these members cannot be
    trained packed exactly: a norm vmap cannot batch, several devices, gradient clipping, compilation."""
    cfg = members[0].member.cfg
    name = members[0].norm.name
    if name in REFUSED_NORMS:
        raise PackRefused(f"norm={name} cannot be packed: {REFUSED_NORMS[name]}")
    if any(bool(m.member.cfg.get("compile", False)) for m in members):
        raise PackRefused("compile=true: a pack trains eager (torch.compile of the vmapped step is not supported)")
    trainer = cfg.trainer
    if int(trainer.get("devices", 1) or 1) > 1 or int(trainer.get("num_nodes", 1) or 1) > 1:
        raise PackRefused("packing runs on one device: trainer.devices and trainer.num_nodes must be 1")
    if trainer.get("gradient_clip_val"):
        raise PackRefused("gradient clipping by norm mixes the members' gradients: unset trainer.gradient_clip_val")
    packed = PackedNet([copy.deepcopy(m.net) for m in members]).train()
    shape = (len(members), cfg.batch, *members[0].datamodule.input_shape)
    try:
        generator = torch.Generator().manual_seed(0)  # the global RNG (each member's own) stays untouched
        packed(torch.randn(shape, generator=generator)).sum().backward()
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PackRefused(f"norm={name} cannot be packed: vmap fails on it ({first})") from None


# ------------------------------------------------------------------------------------------- data
class PackedLoader:
    """Each member's own loader, iterated inside its own RNG (:class:`MemberRng`): yields one list with
    each member's batch. A member's loader is built by its own datamodule, so batch sizes, order and
    the number of batches are its unpacked run's."""

    def __init__(self, loaders: Sequence[Any], rngs: Sequence[MemberRng]):
        self.loaders = list(loaders)
        self.rngs = list(rngs)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[list[Any]]:
        iterators = []
        for loader, rng in zip(self.loaders, self.rngs, strict=True):
            with rng.active():
                iterators.append(iter(loader))
        while True:
            batch = []
            for iterator, rng in zip(iterators, self.rngs, strict=True):
                with rng.active():
                    try:
                        batch.append(next(iterator))
                    except StopIteration:
                        return
            yield batch


class PackedDataModule(pl.LightningDataModule):
    """The members' datamodules side by side: loaders of per-member batches, and each member's
    device-side transform (augmentation, normalization) applied in its own RNG."""

    def __init__(self, datamodules: Sequence[Any], rngs: Sequence[MemberRng]):
        super().__init__()
        self.members = list(datamodules)
        self.rngs = list(rngs)

    def _attach(self) -> None:
        for datamodule in self.members:
            datamodule.trainer = self.trainer

    def _loader(self, method: str) -> PackedLoader:
        self._attach()
        return PackedLoader([getattr(dm, method)() for dm in self.members], self.rngs)

    def train_dataloader(self) -> PackedLoader:
        return self._loader("train_dataloader")

    def val_dataloader(self) -> PackedLoader:
        return self._loader("val_dataloader")

    def test_dataloader(self) -> PackedLoader:
        return self._loader("test_dataloader")

    def on_after_batch_transfer(self, batch: list[Any], dataloader_idx: int) -> list[Any]:
        out = []
        for datamodule, rng, member_batch in zip(self.members, self.rngs, batch, strict=True):
            with rng.active():
                out.append(datamodule.on_after_batch_transfer(member_batch, dataloader_idx))
        return out


# ----------------------------------------------------------------------------------------- module
class PackedClassifier(pl.LightningModule):
    """:class:`src.training.module.Classifier` for K members at once: the same loss, learning rate, schedule
    and optimizer (over the stacked parameters), with every metric, curve and divergence per member."""

    def __init__(self, net: PackedNet, num_classes: int, global_batch: int, rngs: Sequence[MemberRng], **lr: Any):
        super().__init__()
        self.net = net
        self.size = net.size
        self.rngs = list(rngs)
        self.rule = lr_rule(global_batch=global_batch, **lr)  # the unpacked run's rule (src.training.module)
        self.lr = self.rule.lr
        self.val_accuracy = nn.ModuleList(MulticlassAccuracy(num_classes, average="micro") for _ in range(self.size))
        self.test_accuracy = nn.ModuleList(MulticlassAccuracy(num_classes, average="micro") for _ in range(self.size))
        self.best_val_error = [math.inf] * self.size
        self.last_val_error = [math.nan] * self.size
        self.curves: list[list[dict[str, float]]] = [[] for _ in range(self.size)]
        self.diverged: dict[int, str] = {}  # member index -> the unpacked run's divergence message
        self.loss_sum = torch.zeros(self.size)
        self.loss_count = 0
        self.last_losses: torch.Tensor | None = None
        self.last_train_loss = [math.nan] * self.size

    def active(self) -> torch.Tensor:
        """(K,) booleans: the members still training."""
        mask = torch.ones(self.size, dtype=torch.bool)
        for index in self.diverged:
            mask[index] = False
        return mask.to(self.device)

    def member_losses(self, batch: list[list[torch.Tensor]]) -> torch.Tensor:
        images = torch.stack([member[0] for member in batch])
        logits = self.net(images)
        return torch.stack([F.cross_entropy(logits[k], batch[k][1]) for k in range(self.size)])

    def training_step(self, batch: list[list[torch.Tensor]], batch_idx: int) -> torch.Tensor:
        losses = self.member_losses(batch)
        self.last_losses = losses.detach()
        self.loss_sum += self.last_losses
        self.loss_count += 1
        # each member's gradient is its own loss's; a diverged member leaves the sum
        return torch.where(self.active(), losses, torch.zeros_like(losses)).sum()

    def check_divergence(self) -> None:
        """Record the members whose last loss is not finite, with the unpacked run's message."""
        if self.last_losses is None:
            return
        finite = torch.isfinite(self.last_losses).tolist()
        for index, ok in enumerate(finite):
            if not ok and index not in self.diverged:
                loss = float(self.last_losses[index])
                where = f"step {self.trainer.global_step}, epoch {self.trainer.current_epoch}"
                self.diverged[index] = f"training loss is {loss} at {where}"
                log.warning("pack member %d diverged: %s (the others go on)", index, self.diverged[index])
        if len(self.diverged) == self.size:
            self.trainer.should_stop = True

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        if self.trainer.global_step % DIVERGENCE_EVERY == 0:
            self.check_divergence()

    def on_train_epoch_start(self) -> None:
        self.loss_sum = torch.zeros(self.size, device=self.device)
        self.loss_count = 0

    def on_train_epoch_end(self) -> None:
        self.check_divergence()
        losses = (self.loss_sum / self.loss_count).tolist() if self.loss_count else [math.nan] * self.size
        lr = self.trainer.optimizers[0].param_groups[0]["lr"] if self.trainer.optimizers else math.nan
        for index in range(self.size):  # a diverged member's curve is not recorded (nor is an unpacked one's)
            self.last_train_loss[index] = losses[index]
            self.curves[index].append(
                {
                    "epoch": self.current_epoch,
                    "train_loss": losses[index],
                    "val_error": self.last_val_error[index],
                    "lr": lr,
                }
            )
        log.info(
            "epoch %d/%d  train_loss %s  val_error %s  lr %.4g",
            self.current_epoch + 1,
            self.trainer.max_epochs,
            " ".join(f"{loss:.4f}" for loss in losses),
            " ".join(f"{error:.2f}%" for error in self.last_val_error),
            lr,
        )

    def _evaluate(self, batch: list[list[torch.Tensor]], metrics: nn.ModuleList) -> None:
        logits = self.net(torch.stack([member[0] for member in batch]))
        for index, metric in enumerate(metrics):
            metric.update(logits[index], batch[index][1])

    def validation_step(self, batch: list[list[torch.Tensor]], batch_idx: int) -> None:
        self._evaluate(batch, self.val_accuracy)

    def on_validation_epoch_end(self) -> None:
        for index, metric in enumerate(self.val_accuracy):
            error = 100.0 * (1.0 - metric.compute().item())
            metric.reset()
            if not self.trainer.sanity_checking:
                self.last_val_error[index] = error
                self.best_val_error[index] = min(self.best_val_error[index], error)

    def test_step(self, batch: list[list[torch.Tensor]], batch_idx: int) -> None:
        self._evaluate(batch, self.test_accuracy)

    def test_errors(self) -> list[float]:
        errors = [100.0 * (1.0 - metric.compute().item()) for metric in self.test_accuracy]
        for metric in self.test_accuracy:
            metric.reset()
        return errors

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["normlab_pack"] = {
            "best_val_error": list(self.best_val_error),
            "last_val_error": list(self.last_val_error),
            "last_train_loss": list(self.last_train_loss),
            "curves": [list(curve) for curve in self.curves],
            "diverged": dict(self.diverged),
            "rng": [rng.state for rng in self.rngs],
        }

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        state = checkpoint.get("normlab_pack", {})
        self.best_val_error = list(state.get("best_val_error", self.best_val_error))
        self.last_val_error = list(state.get("last_val_error", self.last_val_error))
        self.last_train_loss = list(state.get("last_train_loss", self.last_train_loss))
        self.curves = [list(curve) for curve in state.get("curves", self.curves)]
        self.diverged = {int(k): v for k, v in state.get("diverged", {}).items()}
        for rng, saved in zip(self.rngs, state.get("rng", []), strict=False):
            rng.state = saved

    def configure_optimizers(self) -> dict:
        return optimizer_and_schedule(self.rule, self.net.parameters(), self.trainer)


# ------------------------------------------------------------------------------------------ train
def pack_id(digests: Sequence[str]) -> str:
    """A pack's name: its members' config hashes, hashed (the same members give the same pack)."""
    return "pack-" + config_hash({"members": sorted(digests)})


def pack_description(members: Sequence[RunSpec], digests: Sequence[str], index: int, by: str) -> dict[str, Any]:
    """The run record's ``pack`` field: the pack's id, what it packs by, its size and members, and the
    process that trained it (packs of one sweep may train in parallel worker processes)."""
    return {
        "id": pack_id(digests),
        "by": by,
        "size": len(members),
        "index": index,
        "members": [int(m.cfg.seed) if by == "seed" else str(m.run_dir.name) for m in members],
        "run_dirs": [str(m.run_dir) for m in members],
        "process": os.getpid(),
    }


def fit_pack(
    built: Sequence[BuiltMember], pack_dir: Path, resume: bool = True
) -> tuple[list[dict[str, Any] | None], list[str | None]]:
    """Fit and test the packed members; returns each member's produced record fields (``None`` for a
    diverged member) and divergence message (``None`` for one that completed)."""
    cfg = built[0].member.cfg
    rngs = [b.rng for b in built]
    net = PackedNet([b.net for b in built])
    datamodule = PackedDataModule([b.datamodule for b in built], rngs)
    timer, memory = TrainTimer(), MemoryMonitor()
    checkpoint = pack_dir / CHECKPOINT_DIR / "last.ckpt"
    trainer: pl.Trainer = build(
        cfg.trainer,
        logger=False,
        callbacks=[timer, memory, LastCheckpoint(checkpoint)],
        enable_checkpointing=True,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(pack_dir),
    )
    batches = batch_sizes(cfg.batch, trainer.world_size, built[0].norm)
    module = PackedClassifier(
        net,
        num_classes=built[0].datamodule.num_classes,
        global_batch=batches["global_batch"],
        rngs=rngs,
        **lr_arguments(cfg.optim),
    )
    resume_from = checkpoint if resume and checkpoint.exists() else None
    if resume_from is not None:
        log.info("resuming pack %s from %s", pack_dir.name, resume_from)
    resumed_from_epoch = resumed_epoch(resume_from)
    started = time.perf_counter()
    trainer.fit(module, datamodule=datamodule, ckpt_path=str(resume_from) if resume_from else None)
    fit_seconds = time.perf_counter() - started
    trainer.test(module, datamodule=datamodule, verbose=False)
    test_errors = module.test_errors()
    produced: list[dict[str, Any] | None] = []
    for index, member in enumerate(built):
        if index in module.diverged:
            produced.append(None)
            continue
        member_net = net.unpack(index, member.net)
        best = module.best_val_error[index]
        fields = result_fields(
            trainer=trainer,
            net=member_net,
            datamodule=member.datamodule,
            batches=batches,
            lr=module.lr,
            metrics={
                "val_error": module.last_val_error[index],
                "best_val_error": best if math.isfinite(best) else math.nan,
                "test_error": float(test_errors[index]),
                "train_loss": float(module.last_train_loss[index]),
            },
            curve=list(module.curves[index]),
            timer=timer,
            memory=memory,
            device=module.device,
            fit_seconds=fit_seconds,
            resumed_from_epoch=resumed_from_epoch,
            compiled=False,
            norm_layers=describe_norm_layers(member_net),
        )
        produced.append(fields)
    diverged = [module.diverged.get(index) for index in range(len(built))]
    return produced, diverged


METRICS_FILE = "metrics.csv"


def write_member_metrics(run_dir: Path, curve: Sequence[dict[str, float]], test_error: float | None) -> Path:
    """``metrics.csv`` for a packed member, in the columns of Lightning's CSV logger (``epoch``,
    ``train/loss``, ``val/error``, ``lr``; a last row with ``test/error``), as an unpacked run writes it:
    tools that read a run's per-epoch metrics from that file find them (the record's ``curve`` is the same)."""
    lines = ["epoch,train/loss,val/error,lr,test/error"]
    for point in curve:
        values = [point.get("train_loss"), point.get("val_error"), point.get("lr")]
        lines.append(",".join([str(int(point["epoch"])), *("" if v is None else repr(float(v)) for v in values), ""]))
    if test_error is not None and curve:
        lines.append(f"{int(curve[-1]['epoch'])},,,,{float(test_error)!r}")
    path = run_dir / METRICS_FILE
    write_text_atomic(path, "\n".join(lines) + "\n")
    return path


@dataclass
class PackOutcome:
    """What happened to one member: its record (as a dict), and how it ended."""

    member: RunSpec
    record: dict[str, Any] | None = None
    refused: str | None = None
    error: BaseException | None = None


def train_pack(members: Sequence[RunSpec], by: str = "seed") -> list[PackOutcome]:
    """Train ``members`` (configs that differ only in ``by``) packed, each with its own run directory,
    resume decision and ``result.json``; returns one :class:`PackOutcome` per member, in order.

    Per member, the run lifecycle (:mod:`src.run.lifecycle`) under its run directory's lock: a completed
    record of the same config is skipped; one of another config is refused (``refused.txt``); one left
    with its own unpacked checkpoint resumes unpacked (:func:`src.training.single.train`). The rest train
    as one pack if there are two or more and the pack is allowed (:func:`check_packable`), else one by
    one, unpacked. An interrupted pack resumes from its checkpoint in ``<sweep dir>/.packs/<pack id>/``
    when it is rerun with the same members.
    """
    outcomes = [PackOutcome(member) for member in members]
    with ExitStack() as locks:
        to_pack: list[int] = []
        alone: list[int] = []
        plans: dict[int, lifecycle.Plan] = {}
        for index, member in enumerate(members):
            missing = lifecycle.missing_keys_error(member.cfg)
            if missing is not None:
                outcomes[index].error = missing
                continue
            planned = lifecycle.plan(member, locks)
            if planned.action is Action.SKIP:
                outcomes[index].record = planned.skipped()
            elif planned.action is Action.REFUSE:
                outcomes[index].refused = planned.decision.message
            elif planned.resume_from is not None:
                alone.append(index)  # its own unpacked checkpoint: resume it as it was
            else:
                plans[index] = planned
                to_pack.append(index)
        built: list[BuiltMember] = []
        if len(to_pack) >= 2:
            try:
                built = [build_member(members[i]) for i in to_pack]
                check_packable(built)
            except PackRefused as error:
                log.warning("%s: these %d runs train one by one", error, len(to_pack))
                alone.extend(to_pack)
                to_pack, built = [], []
        else:
            alone.extend(to_pack)
            to_pack = []
        if built:
            _train_packed(built, [outcomes[i] for i in to_pack], [plans[i] for i in to_pack], by)
    for index in sorted(alone):  # outside the locks: train() takes each run directory's own
        member = members[index]
        try:
            outcomes[index].record = train(
                member.cfg, member.run_dir, member.overrides, member.choices, None, member.launch
            )
        except Exception as error:
            outcomes[index].error = error
    return outcomes


def _train_packed(
    built: Sequence[BuiltMember], outcomes: Sequence[PackOutcome], plans: Sequence[lifecycle.Plan], by: str
) -> None:
    """Train the built members as one pack and write each member's record (under the held locks)."""
    members = [b.member for b in built]
    digests = [planned.digest for planned in plans]
    pack_dir = members[0].run_dir.parent / PACKS_DIR / pack_id(digests)
    commit = git_commit()
    records = [
        lifecycle.start(planned, pack=pack_description(members, digests, index, by), norm_info=b.norm.info())
        for index, (planned, b) in enumerate(zip(plans, built, strict=True))
    ]
    cfg = members[0].cfg
    force = any(bool(m.cfg.get("force", False)) for m in members)
    resume = all(bool(m.cfg.get("resume", True)) for m in members) and not force
    try:
        with run_settings(cfg.seed, cfg.get("cpu_threads")):
            produced, diverged = fit_pack(built, pack_dir, resume=resume)
        for record, fields, message in zip(records, produced, diverged, strict=True):
            if message is not None:
                lifecycle.diverged(record, message)
                continue
            lifecycle.completed(record, fields or {})
            if "csv" in (cfg.get("logger") or {}):  # as the unpacked run's CSV logger would
                write_member_metrics(Path(str(record.run_dir)), record.curve, record.metrics.get("test_error"))
        shutil.rmtree(pack_dir, ignore_errors=True)  # a finished pack needs no checkpoint
        with suppress(OSError):
            pack_dir.parent.rmdir()  # .packs/, once no pack is left in it
    except Exception as error:
        for record, outcome in zip(records, outcomes, strict=True):
            lifecycle.failed(record, error)
            outcome.error = error
    finally:
        for record, outcome in zip(records, outcomes, strict=True):
            lifecycle.finish(record, commit)
            outcome.record = record.to_dict()
