"""Which config keys change what a run computes: the one place that decides a run's identity.

A run's **config hash** is the SHA-256 of the *computation view* of its resolved config: the keys that
change the numbers a run produces. Everything else *steers* the run (where it writes, how it logs, how
fast it goes, which claims a report checks) and never changes the hash, nor the run directory name, so
rerunning a finished sweep with ``resume=false``, ``logger=wandb``, ``cpu_threads=1``, ``compile=true`` or
an edited ``report:`` block retrains nothing.

Top-level keys (every one the project's configs define must be listed here; a test enforces it):

- computation: ``norm`` (less ``info``, its presentation), ``model``, ``dataset`` (less its steering
  sub-keys), ``optim``, ``trainer`` (less its steering sub-keys), ``batch``, ``epochs``, ``seed``,
  ``norm_groups``, ``standardize_weights``.
- steering: ``study``, ``force``, ``resume``, ``logger``, ``cpu_threads``, ``report``, ``compile``,
  ``compile_mode``, ``fused_step`` (the fused epoch loop, :mod:`src.training.epoch_loop`), ``ckpt_path`` (a
  checkpoint to resume from: where training restarts, not what it computes), ``callbacks``
  (progress output, ``conf/callbacks/``), ``debug`` (the name of a
  ``conf/debug/`` mode: what the mode changes, trainer limits and epochs, is computation and hashed),
  ``save_weights`` (keeps ``model.pt``), ``reuse_from`` (sweep directories whose completed runs of the same
  hash are copied instead of trained, :mod:`src.run.reuse`).

Decisions: ``compile`` and ``compile_mode`` run the same model and the same arithmetic through other
kernels (the compiled step equals the eager one within float tolerance, ``tests/test_perf.py``); like
cuDNN's algorithm choice (``trainer.benchmark``) they are steering. ``norm_groups`` feeds
``norm.layer.groups`` of the group-wise norms; it counts as computation (a sweep over it must land in
separate run directories), so a bn run with another ``norm_groups`` is a separate run. The device a run
trains on (``trainer.accelerator``, ``dataset.on_device``) changes the random streams but not the
experiment: a sweep finished on a CPU is not retrained because a GPU appeared. ``trainer.devices`` and
``trainer.num_nodes`` are computation: the world size sets the global batch and so the learning rate. A
key nobody classified (``+foo=1``) counts as computation: an unknown key may change the result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

COMPUTATION_KEYS = (
    "norm",
    "model",
    "dataset",
    "optim",
    "trainer",
    "batch",
    "epochs",
    "seed",
    "norm_groups",
    "standardize_weights",
)
STEERING_KEYS = (
    "study",
    "force",
    "resume",
    "logger",
    "cpu_threads",
    "report",
    "compile",
    "compile_mode",
    "fused_step",
    "ckpt_path",
    "callbacks",
    "debug",
    "save_weights",
    "reuse_from",
)
# Sub-keys of computation groups that only steer: caches, evaluation chunking, devices, logging, speed.
STEERING_SUBKEYS = {
    "norm": ("info",),  # label, family, plot order and colour: what reports show, not what a run computes
    "dataset": ("cache_dir", "eval_batch_size", "on_device", "root", "download"),
    "trainer": (
        "_target_",
        "accelerator",
        "benchmark",
        "deterministic",
        "log_every_n_steps",
        "enable_progress_bar",
        "enable_model_summary",
        "enable_checkpointing",
        "num_sanity_val_steps",
        "strategy",
    ),
}
# Keys a user may put on the command line to steer a run: they stay out of the run directory name,
# and so do their sub-keys (report.title=…): conf/train.yaml names sweep directories with the
# ``run_dirname`` resolver below, and lists these keys for Hydra's own job.override_dirname too (which
# the W&B sweep's run.dir uses: Hydra's override grammar cannot nest the resolver there).
# ``experiment`` is no config key: ``experiment=<study>`` (or ``+experiment=<study>``) picks the study file
# (conf/experiment/), which names the sweep directory itself, so the run directories match
# ``--config-dir sweeps --config-name <study>``.
DIRNAME_EXCLUDED = (*STEERING_KEYS, "experiment")
RESOLVER = "run_dirname"


SCHEDULE_TARGET = "src.schedules.{}"
# Keys added to the configs after runs were recorded, with the value that reproduces what those runs did.
ADDED_KEYS: dict[tuple[str, ...], Any] = {("standardize_weights",): False, ("optim", "warmup_epochs"): 0}


def migrate_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A resolved config stored by older code, in today's shape (a config already in it is returned as is).

    Migrations, so that a finished run of the same experiment keeps its hash (and is skipped, not
    refused) after the config layout changed:

    - ``optim.schedule: cosine|step|constant`` with ``optim.milestones`` and ``optim.gamma`` beside it
      became the ``_partial_`` config ``optim.schedule: {_target_: src.schedules.<name>, _partial_: true}``
      (``conf/optim/schedule/``), carrying ``milestones`` and ``gamma`` only for ``step``, which alone
      used them.
    - keys added later (:data:`ADDED_KEYS`: ``standardize_weights``, ``optim.warmup_epochs``) read as the
      value that reproduces what the code before them did (false, 0) where a stored config lacks them.
    """
    config = dict(config)
    if not isinstance(config.get("optim"), Mapping):
        return config  # not a training config (a test's fragment, an empty record)
    for path, value in ADDED_KEYS.items():
        node: dict[str, Any] = config
        for key in path[:-1]:
            if not isinstance(node.get(key), Mapping):
                break
            node[key] = node = dict(node[key])
        else:
            node.setdefault(path[-1], value)
    optim = dict(config["optim"])
    if not isinstance(optim.get("schedule"), str):
        return config
    name = optim.pop("schedule")
    milestones, gamma = optim.pop("milestones", [0.5, 0.75]), optim.pop("gamma", 0.1)
    schedule: dict[str, Any] = {"_target_": SCHEDULE_TARGET.format(name), "_partial_": True}
    if name == "step":
        schedule.update(milestones=milestones, gamma=gamma)
    return {**config, "optim": {"schedule": schedule, **optim}}


def computation_view(config: Mapping[str, Any]) -> dict[str, Any]:
    """The resolved config (:func:`migrate_config`) without its steering keys: what the hash covers."""
    view: dict[str, Any] = {}
    for key, value in migrate_config(config).items():
        if key in STEERING_KEYS:
            continue
        if key in STEERING_SUBKEYS and isinstance(value, Mapping):
            value = {sub: item for sub, item in value.items() if sub not in STEERING_SUBKEYS[key]}
        view[key] = value
    return view


def config_hash(config: Mapping[str, Any]) -> str:
    """SHA-256 (16 hex digits) of :func:`computation_view` of a resolved config."""
    text = json.dumps(computation_view(config), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _leaves(value: Any, prefix: str = "") -> Iterator[tuple[str, Any]]:
    if isinstance(value, Mapping):
        for key in sorted(value):
            yield from _leaves(value[key], f"{prefix}.{key}" if prefix else str(key))
    else:
        yield prefix, value


def computation_leaves(config: Mapping[str, Any]) -> dict[str, Any]:
    """``{dotted key: value}`` for every leaf of :func:`computation_view` (lists stay values)."""
    return dict(_leaves(computation_view(config)))


def other_factors(runs: Sequence[tuple[Any, Any, Mapping[str, Any]]]) -> list[str]:
    """The factors of a set of runs (each its norm, batch and resolved config) besides norm, batch and seed:
    the computation keys (dotted) that take more than one value among them, less what a run's norm and batch
    set themselves (the ``norm`` group's keys, a key equal to the batch such as ``dataset.batch_size``)
    unless those vary within one norm and batch (a GN group-size sweep), and less a key that splits the runs
    that have it exactly as a shorter one does (``trainer.max_epochs`` is ``${epochs}``; gn's
    ``norm.layer.groups`` follows ``norm_groups``). ``epochs`` where a directory
    holds a study's two arms, or where bn ran at 1 epoch and gn at 10; ``optim.base_lr`` in an lr sweep.
    A mean over runs of different settings is no mean over seeds, and a difference between cells of
    different settings is no difference between norms or batches."""
    leaves = [
        ((norm, batch), {k: json.dumps(v, sort_keys=True, default=str) for k, v in computation_leaves(c).items()})
        for norm, batch, c in runs
    ]
    cells: dict[tuple[Any, Any], list[dict[str, str]]] = {}
    for cell, values in leaves:
        cells.setdefault(cell, []).append(values)
    keys = {key for members in cells.values() for key in set().union(*members) if _varies(key, members)}
    for key in set().union(*(values for _, values in leaves)) if leaves else ():
        if key in ("batch", "norm") or key.startswith("norm."):
            continue
        if all(values.get(key) == json.dumps(batch) for (_, batch), values in leaves):
            continue  # the batch under another name
        if _varies(key, [values for _, values in leaves]):
            keys.add(key)
    keys.discard("seed")
    kept: list[str] = []
    for key in sorted(keys, key=lambda k: (k.count("."), k)):
        having = [values for _, values in leaves if key in values]
        if not any(_partition(key, having) == _partition(other, having) for other in kept):
            kept.append(key)
    return sorted(kept)


def _partition(key: str, members: Sequence[Mapping[str, str]]) -> tuple[int, ...]:
    """How ``key``'s values split ``members`` (as group numbers in order of first appearance): two keys
    with one partition over the runs that have the second (``norm.layer.groups`` of the gn runs and
    ``norm_groups``) name one factor."""
    first_seen: dict[str | None, int] = {}
    return tuple(first_seen.setdefault(values.get(key), len(first_seen)) for values in members)


def _varies(key: str, members: Sequence[Mapping[str, str]]) -> bool:
    return len({values.get(key) for values in members}) > 1


def changed_keys(old: Mapping[str, Any], new: Mapping[str, Any]) -> list[str]:
    """``key: old → new`` for every leaf of the computation view that differs (dotted keys, sorted)."""
    before, after = computation_leaves(old), computation_leaves(new)
    missing = "(absent)"
    return [
        f"{key}: {before.get(key, missing)} → {after.get(key, missing)}"
        for key in sorted(set(before) | set(after))
        if before.get(key, missing) != after.get(key, missing)
    ]


def _top_key(override: str) -> str:
    """``norm`` of ``norm=gn``, ``report`` of ``+report.title=x``, ``hydra/launcher`` of a group."""
    key = override.split("=", 1)[0].lstrip("~+")
    return key.split("@", 1)[0].split(".", 1)[0]


def run_dirname(task_overrides: Sequence[str]) -> str:
    """A run's directory name: its task overrides, sorted and joined by ``,`` as Hydra's
    ``job.override_dirname`` does, less every override of a steering key or one of its sub-keys, and
    less every override of a steering sub-key (``trainer.accelerator=cpu``, ``dataset.on_device=false``):
    a run moved to another device keeps its directory, so it resumes there (its config hash is the same)."""
    kept = sorted(
        str(item)
        for item in task_overrides
        if _top_key(str(item)) not in DIRNAME_EXCLUDED and not _steering_subkey(str(item))
    )
    return ",".join(kept)


def _steering_subkey(override: str) -> bool:
    """Whether ``override`` sets one of :data:`STEERING_SUBKEYS` (``trainer.accelerator=cpu``)."""
    parts = override.split("=", 1)[0].lstrip("~+").split(".")
    return len(parts) == 2 and parts[1] in STEERING_SUBKEYS.get(parts[0], ())


def register_resolvers() -> None:
    """Make ``${run_dirname:${hydra:overrides.task}}`` available to the configs (idempotent)."""
    from omegaconf import OmegaConf

    if not OmegaConf.has_resolver(RESOLVER):
        OmegaConf.register_new_resolver(RESOLVER, run_dirname)
