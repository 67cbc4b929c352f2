"""Train a pack: the run lifecycle (:mod:`src.run.lifecycle`) for each member, under its run
directory's lock, around one fit of all of them (:func:`fit_pack`); each member keeps its own run
directory, record and ``metrics.csv``."""

from __future__ import annotations

import logging
import math
import os
import shutil
import time
from collections.abc import Sequence
from contextlib import ExitStack, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytorch_lightning as pl

from src.norms import describe_norm_layers
from src.run import lifecycle
from src.run.atomic import write_text_atomic
from src.run.config_keys import config_hash
from src.run.lifecycle import RunSpec
from src.run.provenance import git_commit
from src.run.resume import CHECKPOINT_DIR, Action
from src.sweep.pack.data import PackedDataModule
from src.sweep.pack.members import BuiltMember, build_member
from src.sweep.pack.module import PackedClassifier
from src.sweep.pack.network import PackedNet, PackRefused, check_packable
from src.training.callbacks import MemoryMonitor, TrainedBy, TrainTimer
from src.training.checkpointing import AtomicCheckpointIO, LastCheckpoint
from src.training.experiment import batch_sizes, build, lr_arguments, result_fields, resumed_epoch
from src.training.experiment import fused_mode as run_fused_mode
from src.training.fused_step import sgd_settings
from src.training.module import lr_rule
from src.training.perf import training_device
from src.training.process import run_settings
from src.training.single import train

log = logging.getLogger(__name__)
PACKS_DIR = ".packs"  # beside the run directories: one checkpoint directory per pack


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
        **({"base_lr": [float(m.cfg.optim.base_lr) for m in members]} if "optim" in by else {}),
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
    checkpoint = pack_dir / CHECKPOINT_DIR / "last.ckpt"
    resume_from = checkpoint if resume and checkpoint.exists() else None
    fused = fused_mode(cfg, built, resume_from)
    datamodule = PackedDataModule([b.datamodule for b in built], rngs, fused=fused is not None)
    timer, memory = TrainTimer(), MemoryMonitor()
    trainer: pl.Trainer = build(
        cfg.trainer,
        logger=False,
        callbacks=[timer, memory, TrainedBy(), LastCheckpoint(checkpoint)],
        enable_checkpointing=True,
        plugins=[AtomicCheckpointIO()],
        default_root_dir=str(pack_dir),
    )
    batches = batch_sizes(cfg.batch, trainer.world_size, built[0].norm)
    rules = [lr_rule(global_batch=batches["global_batch"], **lr_arguments(b.member.cfg.optim)) for b in built]
    module = PackedClassifier(
        net,
        num_classes=built[0].datamodule.num_classes,
        global_batch=batches["global_batch"],
        rngs=rngs,
        fused=fused,
        member_lr=[rule.lr for rule in rules],
        member_weight_decay=[sgd_settings(rule.optimizer).weight_decay for rule in rules] if fused else None,
        **lr_arguments(cfg.optim),
    )
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
            lr=rules[index].lr,
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
            compiled=fused in ("compile", "graph"),
            norm_layers=describe_norm_layers(member_net),
            train_steps=module.steps_trained(),
            fused_step=fused,
        )
        produced.append(fields)
    diverged = [module.diverged.get(index) for index in range(len(built))]
    return produced, diverged


def fused_mode(cfg: Any, built: Sequence[BuiltMember], resume_from: Path | None = None) -> str | None:
    """The pack's fused-step mode (``fused_step``; :func:`src.training.fused_step.mode_for`) on the device
    its trainer uses; ``resume_from``: the pack checkpoint it will resume (``auto`` keeps its loop)."""
    device = training_device(cfg.trainer.get("accelerator", "auto"))
    return run_fused_mode(cfg, device, built[0].net, resume_from=resume_from, section="normlab_pack")


def pack_directory(members: Sequence[Any], digests: Sequence[str]) -> Path:
    """A pack's working directory: ``<sweep dir>/.packs/<pack id>/`` (its checkpoint while it trains)."""
    return Path(members[0].run_dir).parent / PACKS_DIR / pack_id(digests)


def pack_checkpoint(members: Sequence[Any], digests: Sequence[str]) -> Path | None:
    """The checkpoint an interrupted pack of these members left, or None."""
    checkpoint = pack_directory(members, digests) / CHECKPOINT_DIR / "last.ckpt"
    return checkpoint if checkpoint.exists() else None


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
                saved = pack_checkpoint([members[i] for i in to_pack], [plans[i].digest for i in to_pack])
                check_packable(built, fused_mode(members[to_pack[0]].cfg, built, saved))
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
    pack_dir = pack_directory(members, digests)
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
