"""The run lifecycle, one for single and packed runs: decide → skip / refuse / resume → record → train
→ write the record.

Per run directory, under its lock (:func:`plan`): a completed record of the same config hash is
skipped, and so is a run another sweep completed with that hash when ``reuse_from`` names that sweep (it is
copied here first, :mod:`src.run.reuse`); one of another config is refused (``refused.txt``, nothing else
written); ``force=true`` retrains either, keeping the old record as ``result.<hash>.json``; a checkpoint
an interrupted job left is resumed from (``resume=true``). A run that trains (:func:`start`) gets its record, ``status:
running``, written before anything is built; when it ends, whatever happened, the record says how
(:func:`completed`, :func:`diverged`, :func:`failed`) and is written again (:func:`finish`).

What trains is not this module's business: :func:`run` takes the fit as a function
(:func:`src.training.single.train` builds and fits one network), and the packed launcher's packs
(:func:`src.sweep.pack.training.train_pack`) go through :func:`plan`, :func:`start` and :func:`finish`
once per member around one fit of all of them.
"""

from __future__ import annotations

import logging
import shutil
import traceback
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from src.run.atomic import write_text_atomic
from src.run.config_keys import config_hash
from src.run.identity import now, run_identity
from src.run.provenance import git_commit, machine_description
from src.run.records import RunRecord, write_record
from src.run.resume import (
    CHECKPOINT_DIR,
    REFUSAL_FILE,
    Action,
    Decision,
    RunRefused,
    archive_record,
    decide,
    previous_run,
    run_lock,
)
from src.run.reuse import copy_run, find_completed, source_dirs

log = logging.getLogger(__name__)


class Diverged(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class RunSpec:
    """One run to train: its config, run directory and what the launcher knows about it."""

    cfg: DictConfig
    run_dir: Path
    overrides: list[str] = field(default_factory=list)
    choices: dict[str, Any] | None = None
    launch: dict[str, Any] | None = None


@dataclass
class Plan:
    """A run directory decided: the run, its resolved config and config hash, and the decision."""

    spec: RunSpec
    config: dict[str, Any]
    digest: str
    decision: Decision

    @property
    def action(self) -> Action:
        return self.decision.action

    @property
    def resume_from(self) -> Path | None:
        return self.decision.resume_from

    def skipped(self) -> dict[str, Any]:
        """The earlier record a skipped run returns, marked ``skipped``."""
        return {**(self.decision.previous.record or {}), "skipped": True}


def missing_keys_error(cfg: DictConfig) -> ValueError | None:
    """The error of a config that leaves required keys (``???``) unset, one line naming them; ``None``
    for a complete config."""
    missing = sorted(OmegaConf.missing_keys(cfg))
    if not missing:
        return None
    return ValueError(f"{', '.join(missing)}: required and not given (give {missing[0]}=<value>)")


def resolve(cfg: DictConfig) -> tuple[dict[str, Any], str]:
    """The resolved config and its hash; a missing required key raises :func:`missing_keys_error`'s error."""
    error = missing_keys_error(cfg)
    if error is not None:
        raise error
    config = OmegaConf.to_container(cfg, resolve=True)
    return config, config_hash(config)


def plan(spec: RunSpec, locks: ExitStack, main: bool = True) -> Plan:
    """Resolve the run's config (a missing key raises before anything is written), take its run
    directory's lock into ``locks`` (held until the caller closes them) and decide: a skip is logged, a
    refusal's line written to ``refused.txt``.

    Under DDP every rank plans: only rank 0 (``main``) locks and writes; the others decide skip or
    resume from what rank 0 left (it deletes a stale checkpoint before it rewrites the record).
    """
    config, digest = resolve(spec.cfg)
    if main:
        locks.enter_context(run_lock(spec.run_dir))
    cfg = spec.cfg
    force, resume = bool(cfg.get("force", False)), bool(cfg.get("resume", True))
    decision = decide(spec.run_dir, config, digest, force=force, resume=resume)
    if decision.action is Action.TRAIN and not force:
        decision = reused(spec, config, digest, decision, main)
    if decision.action is Action.SKIP:
        log.info("skipping %s: completed earlier with the same config (force=true retrains)", spec.run_dir)
    elif decision.action is Action.REFUSE and main:
        write_text_atomic(spec.run_dir / REFUSAL_FILE, decision.message + "\n")
    return Plan(spec, config, digest, decision)


def reused(spec: RunSpec, config: dict[str, Any], digest: str, decision: Decision, main: bool) -> Decision:
    """``decision`` (to train) unless a sweep in ``reuse_from`` completed the same computation: then that
    run is copied into the run directory (:func:`src.run.reuse.copy_run`, rank 0; a checkpoint this directory
    kept is deleted) and the decision is to skip it. Every DDP rank searches alike, so all agree."""
    source = find_completed(source_dirs(spec.cfg.get("reuse_from")), digest, exclude=spec.run_dir)
    if source is None:
        return decision
    if main:
        identity = run_identity(spec.cfg, spec.overrides, spec.choices)
        copy_run(source, spec.run_dir, identity, config, digest, spec.launch)
        shutil.rmtree(spec.run_dir / CHECKPOINT_DIR, ignore_errors=True)
    log.info("reusing %s for %s: the same config, completed there (reuse_from)", source, spec.run_dir)
    return Decision(Action.SKIP, previous_run(spec.run_dir))


def start(
    planned: Plan, main: bool = True, pack: dict[str, Any] | None = None, norm_info: dict[str, Any] | None = None
) -> RunRecord:
    """Clear what an earlier job left (``refused.txt``; a completed record, forced, is kept as
    ``result.<hash>.json``; a checkpoint not resumed from is deleted) and write the run's record,
    ``status: running`` (rank 0 only). ``pack`` and ``norm_info``: what a packed member knows already."""
    spec, previous = planned.spec, planned.decision.previous
    if main:
        (spec.run_dir / REFUSAL_FILE).unlink(missing_ok=True)
        if previous.completed:
            kept = archive_record(spec.run_dir, previous.digest)
            log.info("force=true: the earlier record of %s is kept as %s", spec.run_dir, kept.name)
        if previous.checkpoint is not None and planned.resume_from is None:
            previous.checkpoint.unlink()
    record = RunRecord(
        **run_identity(spec.cfg, spec.overrides, spec.choices),
        run_dir=str(spec.run_dir),
        config_hash=planned.digest,
        config=planned.config,
        launch=spec.launch,
        started_at=now(),
        pack=pack,
    )
    if norm_info is not None:
        record.norm_info = norm_info
    if main:
        write_record(spec.run_dir, record)
    return record


def completed(record: RunRecord, produced: dict[str, Any]) -> None:
    """The run trained and was tested: its record takes the fields it produced. A run that trained fewer
    epochs than its config names (the trainer stopped it early) is not completed: it is recorded failed,
    so no report counts it as the run its config describes."""
    for key, value in produced.items():
        setattr(record, key, value)
    trained = (produced.get("timing") or {}).get("epochs_completed")
    if record.epochs is not None and trained is not None and int(trained) != int(record.epochs):
        record.status = "failed"
        record.error = f"trained {trained} of the {record.epochs} epochs its config names (the trainer stopped early)"
        log.warning("%s: %s", record.run_dir, record.error)
        return
    record.status = "completed"


def diverged(record: RunRecord, message: str) -> None:
    """The run's training loss stopped being finite (``message`` says where)."""
    record.status, record.error = "diverged", message
    log.warning("%s diverged: %s", record.run_dir, message)


def failed(record: RunRecord, error: BaseException) -> None:
    """The run raised ``error`` (called while it is being handled: the record keeps the traceback)."""
    record.status, record.error = "failed", f"{type(error).__name__}: {error}"
    record.traceback = traceback.format_exc()


def finish(record: RunRecord, commit: str | None, main: bool = True) -> None:
    """The run's end, whatever it was: time, the code it started with and the machine; written (rank 0)."""
    record.finished_at = now()
    record.environment.update(git_commit=commit, machine=machine_description())
    if main:
        write_record(Path(str(record.run_dir)), record)


Fit = Callable[[RunRecord, Path | None], dict[str, Any]]


def run(
    spec: RunSpec, fit: Fit, main: bool = True, written: Callable[[RunRecord], None] | None = None
) -> dict[str, Any]:
    """One run's whole lifecycle around ``fit(record, resume_from)``, which builds, trains and tests it
    and returns the record fields it produced; returns the final record as a dict.

    Skipped: the earlier record (``skipped: true``). Refused: :class:`RunRefused`. :class:`Diverged`
    from ``fit`` ends the run with ``status: diverged``; any other error is recorded (``status:
    failed``) and re-raised. ``written(record)`` runs after the final record is written (rank 0 only;
    W&B publishes it). A completed run's checkpoint is deleted: only interrupted runs need one.
    """
    commit = git_commit()  # the code this run starts with (the tree may change while it trains)
    with ExitStack() as locks:
        planned = plan(spec, locks, main)
        if planned.action is Action.SKIP:
            return planned.skipped()
        if planned.action is Action.REFUSE:
            raise RunRefused(planned.decision.message)
        record = start(planned, main)
        try:
            completed(record, fit(record, planned.resume_from))
            if main:
                shutil.rmtree(spec.run_dir / CHECKPOINT_DIR, ignore_errors=True)
        except Diverged as error:
            diverged(record, str(error))
        except Exception as error:
            failed(record, error)
            raise
        finally:
            finish(record, commit, main)
            if main and written is not None:
                written(record)
    return record.to_dict()
