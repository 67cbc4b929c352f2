"""The packed launcher: ``python -m src.train -m hydra/launcher=packed norm=bn,gn batch=2,32 seed=0,1,2``.

Hydra's basic launcher runs the jobs of a sweep one after another; this one first groups them by every
override but ``by`` (``seed``), so the seeds of one configuration form a group, cuts each group into
packs of at most ``size`` runs, and trains each pack in one process (:func:`src.sweep.pack.train_pack`).
Every run still gets its own run directory (Hydra sets it up as for any job: ``.hydra/``, the log)
and its own ``result.json``; a pack of one, and a pack whose norm cannot be packed, train as usual.

``size: auto`` takes the pack size from :func:`default_pack_size`: the device and the batch decide
whether packing pays (``make bench`` measures it). ``n_jobs`` packs (or lone runs) train at once, each in
a joblib worker process as with ``hydra/launcher=parallel`` (one CPU thread each by default): on a 2-core
CPU, ``n_jobs: 2`` keeps both cores busy with packs.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf, open_dict

from src.run.config_keys import _top_key, run_dirname

if TYPE_CHECKING:
    from src.sweep.probe import Probe  # torch: imported only when a sweep probes

log = logging.getLogger(__name__)
LAUNCH_PLAN = "launch_plan.json"  # size=probe: what was measured and estimated, beside the run directories

#: pack sizes by device type and batch, from ``make bench`` (runs per hour packed / unpacked;
#: results/bench/packing.csv and first_run/): on this project's 2-core CPU, one thread, at batch 2 K = 8
#: gives 1.68-1.99× (K = 4 1.48-1.78×) and at batch 32 nothing (0.86-1.03×): 8 at batch ≤ 2, off above
#: (batches between 2 and 32 were not measured). On an H100
#: (results/gpu_check/h100_2026-11-26/packing.csv) 8 packed ResNet-20 runs gave 5.5-7.3× at batch 2
#: and 32; larger batches were not measured: off.
DEFAULT_SIZES = {"cpu": ((2, 8), (10**9, 1)), "cuda": ((32, 8), (10**9, 1))}


def default_pack_size(device: str, batch: int) -> int:
    """How many runs to pack on ``device`` (``cpu`` or ``cuda``) at this per-device batch: 1 (off)
    where packing does not pay."""
    for limit, size in DEFAULT_SIZES.get(device, DEFAULT_SIZES["cpu"]):
        if batch <= limit:
            return size
    return 1


def _device_type(config: DictConfig) -> str:
    from src.training.perf import training_device  # torch: only when a sweep launches

    return training_device(OmegaConf.select(config, "trainer.accelerator", default="auto")).type


#: overrides that set how many steps a cell trains, not what one step costs: cells that differ only in these
#: share one pack-size probe (a study's half-length arm is not measured again)
LENGTH_KEYS = ("epochs",)

#: what members of one pack may differ in besides the seed: settings that keep every parameter's shape
#: and that the fused step takes per member (src/training/fused_step.py)
PER_MEMBER_KEYS = ("seed", "optim.base_lr", "optim.optimizer.weight_decay")


def by_keys(by: str | Sequence[str]) -> tuple[str, ...]:
    """``by`` as its keys: ``seed``, ``seed,optim.base_lr`` or a list; each must be one of
    :data:`PER_MEMBER_KEYS` (one line naming the key otherwise)."""
    keys = tuple(k.strip() for k in (by.split(",") if isinstance(by, str) else by) if str(k).strip())
    wrong = [k for k in keys if k not in PER_MEMBER_KEYS]
    if not keys or wrong:
        raise ValueError(
            f"hydra.launcher.by={by!r}: allowed are {', '.join(PER_MEMBER_KEYS)} (comma-separated; "
            "members of a pack may differ only in settings that keep the parameters' shapes)"
        )
    return keys


def _override_key(override: str) -> str:
    return override.split("=", 1)[0].lstrip("~+")


def group_jobs(job_overrides: Sequence[Sequence[str]], by: str | Sequence[str]) -> list[list[int]]:
    """Indices of the jobs, grouped by their overrides less those of ``by`` (one key or several), in
    first-seen order."""
    keys = set(by_keys(by))
    groups: dict[tuple[str, ...], list[int]] = {}
    for index, overrides in enumerate(job_overrides):
        key = tuple(sorted(o for o in overrides if _override_key(o) not in keys and _top_key(o) not in keys))
        groups.setdefault(key, []).append(index)
    return list(groups.values())


class PackedLauncher(Launcher):
    """Runs a sweep locally, packing the jobs that differ only in ``by`` (see the module docstring).

    Args:
        by: the override that differs between the members of a pack (``seed``).
        size: the most runs in one pack; ``probe``: measured for each cell on this machine
            (:mod:`src.sweep.probe`, up to 64); ``auto``: ``probe`` on a GPU, :func:`default_pack_size`'s
            measured table on a CPU (where a probe would cost more than it saves on short sweeps).
        n_jobs: packs trained at once, each in its own worker process (1: one after another, in this one).
    """

    def __init__(self, by: str | Sequence[str] = "seed", size: int | str = "auto", n_jobs: int = 1) -> None:
        self.by = ",".join(by_keys(by))
        if not (size in ("auto", "probe") or (isinstance(size, int) and not isinstance(size, bool) and size >= 1)):
            raise ValueError(f"hydra.launcher.size={size!r}: allowed are auto, probe or an integer >= 1")
        self.size = size
        self.n_jobs = int(n_jobs)
        if self.n_jobs < 1:
            raise ValueError(f"hydra.launcher.n_jobs={n_jobs}: must be an integer ≥ 1")
        self.config: DictConfig | None = None
        self.plan: list[dict[str, Any]] = []  # size=probe: each group's measured size and time
        self.earlier_plan: list[dict[str, Any]] = []
        self.probes: dict[str, Probe] = {}  # size=probe: each step's probe, by its cell less seed and length
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config = config
        self.hydra_context = hydra_context
        self.task_function = task_function

    def _job_config(self, overrides: Sequence[str], idx: int) -> DictConfig:
        assert self.hydra_context is not None and self.config is not None
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, list(overrides))
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = idx
            sweep_config.hydra.job.num = idx
        return sweep_config

    def _pack_size(self, config: DictConfig, members: int) -> int:
        """The pack size for a group of ``members`` runs: the given ``size``; ``auto`` on a CPU, the measured
        table; ``probe`` (and ``auto`` on a GPU), measured now on this machine for this cell
        (:func:`src.sweep.probe.probe_cell`; its estimate of a pack's time goes into ``launch_plan.json``)."""
        probing = self.size == "probe" or (self.size == "auto" and _device_type(config) == "cuda")
        if probing:  # auto on a GPU: a probe costs seconds there, and the table was measured only up to K = 8
            from src.sweep.probe import probe_cell

            cell = run_dirname([o for o in config.hydra.overrides.task if _top_key(o) not in by_keys(self.by)])
            earlier = next((g for g in self.earlier_plan if g.get("cell") == cell), None)
            if earlier is not None:  # a resumed sweep keeps its packs (their checkpoints name their members)
                log.info(
                    "pack size of %s: %d, as launch_plan.json measured it before", cell or "the sweep", earlier["size"]
                )
                self.plan.append(earlier)
                return int(earlier["size"])
            step_cell = run_dirname(
                [o for o in config.hydra.overrides.task if _top_key(o) not in (*by_keys(self.by), *LENGTH_KEYS)]
            )
            measured, started = self.probes.get(step_cell), time.perf_counter()
            if measured is not None and measured.k <= members:
                probe = replace(measured, epochs=int(config.epochs))
                log.info("pack size of %s: %d, as the probe of the same step measured it", cell, probe.k)
            else:
                probe = probe_cell(config, members)
                self.probes[step_cell] = probe
            self.plan.append(
                {
                    "cell": cell,
                    "runs": members,
                    "size": probe.k,
                    "packs": math.ceil(members / probe.k),
                    "pack_seconds": round(probe.pack_seconds(), 1),
                    "probe": [vars(row) for row in probe.rows],
                    "probe_seconds": round(time.perf_counter() - started, 1),  # what measuring it cost here
                }
            )
            return probe.k
        if self.size != "auto":
            return max(1, int(self.size))
        return default_pack_size(_device_type(config), int(config.batch))

    def _read_plan(self) -> list[dict[str, Any]]:
        """The groups of an earlier ``launch_plan.json`` of this sweep directory (none when absent)."""
        if self.config is None:
            return []
        try:
            data = json.loads((Path(str(self.config.hydra.sweep.dir)) / LAUNCH_PLAN).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return []
        return [g for g in data.get("groups", []) if isinstance(g, dict) and "cell" in g and "size" in g]

    def units(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> list[list[int]]:
        """The sweep's jobs (indices) cut into what trains together: packs, and lone runs as units of one."""
        units: list[list[int]] = []
        self.plan, self.probes = [], {}
        self.earlier_plan = self._read_plan()
        for group in group_jobs(job_overrides, self.by):
            config = self._job_config(job_overrides[group[0]], initial_job_idx + group[0])
            size = self._pack_size(config, len(group))
            units += [group[start : start + size] for start in range(0, len(group), size)]
        if self.plan and self.config is not None:
            from src.run.atomic import write_text_atomic

            text = json.dumps({"n_jobs": self.n_jobs, "groups": self.plan}, indent=2)
            write_text_atomic(Path(str(self.config.hydra.sweep.dir)) / LAUNCH_PLAN, text + "\n")
        return units

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        setup_globals()
        assert self.hydra_context is not None and self.config is not None and self.task_function is not None
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        units = self.units(job_overrides, initial_job_idx)
        log.info(
            "Launching %d jobs locally, packed by %s: %d packs and lone runs, %d at a time",
            len(job_overrides),
            self.by,
            len(units),
            self.n_jobs,
        )
        for unit in units:
            for i in unit:
                log.info("\t#%d : %s", initial_job_idx + i, " ".join(filter_overrides(job_overrides[i])))
        returns: dict[int, JobReturn] = {}
        if self.n_jobs == 1 or len(units) == 1:
            for unit in units:
                returns.update(self.run_unit(unit, job_overrides, initial_job_idx))
                configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        else:
            from hydra.core.singleton import Singleton
            from joblib import Parallel, delayed

            state = Singleton.get_state()
            done = Parallel(n_jobs=self.n_jobs, backend="loky")(
                delayed(_run_unit_in_worker)(
                    self.by,
                    self.size,
                    unit,
                    [list(o) for o in job_overrides],
                    initial_job_idx,
                    self.hydra_context,
                    self.config,
                    self.task_function,
                    state,
                )
                for unit in units
            )
            for part in done:
                returns.update(part)
        return [returns[i] for i in range(len(job_overrides))]

    def run_unit(
        self, unit: Sequence[int], job_overrides: Sequence[Sequence[str]], initial_job_idx: int
    ) -> dict[int, JobReturn]:
        """Train one unit of :meth:`units`: a lone run as Hydra would, a pack with :func:`src.sweep.pack.train_pack`."""
        assert self.hydra_context is not None and self.task_function is not None
        configs = {i: self._job_config(job_overrides[i], initial_job_idx + i) for i in unit}
        if len(unit) > 1:
            return self._launch_pack(unit, configs)
        i = unit[0]
        return {
            i: run_job(
                hydra_context=self.hydra_context,
                task_function=self.task_function,
                config=configs[i],
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
        }

    def _launch_pack(self, chunk: Sequence[int], configs: dict[int, DictConfig]) -> dict[int, JobReturn]:
        """Set every member's job up as Hydra would (its run directory, ``.hydra/``, log file), then
        train the members as one pack; one JobReturn per member (the test error, NaN if it failed)."""
        from src.run.identity import launch_description
        from src.run.lifecycle import RunSpec
        from src.sweep.pack import train_pack

        assert self.hydra_context is not None
        members: dict[int, RunSpec] = {}

        def collect(i: int) -> TaskFunction:
            def task(cfg: DictConfig) -> None:
                hydra_cfg = HydraConfig.get()
                members[i] = RunSpec(
                    cfg=cfg.copy(),
                    run_dir=Path(hydra_cfg.runtime.output_dir),
                    overrides=list(hydra_cfg.overrides.task),
                    choices=dict(hydra_cfg.runtime.choices),
                    launch=launch_description(hydra_cfg),
                )

            return task

        # a member's job ends when the pack has trained it, not when its run directory is set up: the
        # callbacks' on_job_end (the sweep's [k/N] line, a user's own) is held back until then
        setting_up = HydraContext(
            config_loader=self.hydra_context.config_loader, callbacks=_JobEndsHeld(self.hydra_context.callbacks)
        )
        returns = {
            i: run_job(
                hydra_context=setting_up,
                task_function=collect(i),
                config=configs[i],
                job_dir_key="hydra.sweep.dir",
                job_subdir_key="hydra.sweep.subdir",
            )
            for i in chunk
        }
        handlers = _member_log_files([members[i].run_dir for i in chunk[:-1]])  # the last one's is set up
        try:
            outcomes = train_pack([members[i] for i in chunk], by=self.by)
        finally:
            for handler in handlers:
                logging.getLogger().removeHandler(handler)
                handler.close()
        for i, outcome in zip(chunk, outcomes, strict=True):
            value: Any = math.nan
            if outcome.error is not None:
                log.error("%s failed: %s: %s", members[i].run_dir, type(outcome.error).__name__, outcome.error)
            elif outcome.refused is not None:
                log.error("%s", outcome.refused)
            elif outcome.record and outcome.record.get("status") == "completed":
                value = outcome.record.get("metrics", {}).get("test_error", math.nan)
            returns[i].return_value = value  # the sweep goes on; SweepSummary lists what did not complete
            returns[i].status = JobStatus.COMPLETED
        for i in chunk:
            self.hydra_context.callbacks.on_job_end(config=configs[i], job_return=returns[i])
        return returns


class _JobEndsHeld:
    """Hydra's callbacks for setting a pack member's job up: every hook passes through but
    ``on_job_end``, which :meth:`PackedLauncher._launch_pack` calls once the pack has trained."""

    def __init__(self, callbacks: Any) -> None:
        self.callbacks = callbacks

    def __getattr__(self, name: str) -> Any:
        return getattr(self.callbacks, name)

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        """Held back: the member has not trained yet."""


def _run_unit_in_worker(
    by: str,
    size: int | str,
    unit: Sequence[int],
    job_overrides: Sequence[Sequence[str]],
    initial_job_idx: int,
    hydra_context: HydraContext,
    config: DictConfig,
    task_function: TaskFunction,
    singleton_state: dict[Any, Any],
) -> dict[int, JobReturn]:
    """One unit in a joblib worker process: Hydra's global state restored as its joblib launcher does."""
    from hydra.core.singleton import Singleton

    setup_globals()
    Singleton.set_state(singleton_state)
    launcher = PackedLauncher(by=by, size=size)
    launcher.setup(hydra_context=hydra_context, task_function=task_function, config=config)
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    return launcher.run_unit(unit, job_overrides, initial_job_idx)


def _member_log_files(run_dirs: Sequence[Path]) -> list[logging.Handler]:
    """A log file (``train.log``) in each of ``run_dirs``, appended to, for the time of the pack."""
    handlers: list[logging.Handler] = []
    root = logging.getLogger()
    template = next((h for h in root.handlers if isinstance(h, logging.FileHandler)), None)
    for run_dir in run_dirs:
        handler = logging.FileHandler(run_dir / "train.log", mode="a")
        if template is not None:
            handler.setFormatter(template.formatter)
            handler.setLevel(template.level)
        root.addHandler(handler)
        handlers.append(handler)
    return handlers
