"""Find run records, flatten them into one pandas row per run, and list the runs not counted.

Only run records are read (never training code), as :class:`src.records.RunRecord`: each run
directory's ``result.json``, and every line of a study's ``runs.jsonl`` (the records a report keeps).
The per-epoch curve is the record's own (``curve``); records of schema 0 have none, and for them the
``metrics.csv`` Lightning wrote beside ``result.json`` is read instead and put into the record, so a
study's ``runs.jsonl`` always carries its curves. A run is counted when its record has
``status: completed`` and a finite ``metrics.test_error``; everything else found under the given
directories is listed with the reason it was not counted: unreadable or corrupt records, failed or
unfinished runs, job directories without a record (interrupted runs), and a second run of the same
study, overrides and seed. The same record read twice (a run's ``result.json`` and the copy a report kept
in ``runs.jsonl`` under the same directory, as ``make demo`` writes its report into ``multirun/demo/``) is
one run, read once.

:func:`load_runs` is the notebook API: one path or several in, one tidy row per counted run out
(docs/notebook.md).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from src.report.config_columns import config_leaves, varying_config
from src.report.curves import curve_frame, curve_points, read_curve, summarize_curve
from src.run.records import RECORD_FILE, RUNS_FILE, RunRecord, read_record, read_runs

IDENTITY = ["study", "dataset", "model", "norm", "batch", "seed", "epochs"]
METRICS = ["test_error", "val_error", "best_val_error", "train_loss"]
TIMING = ["fit_seconds", "train_seconds", "train_steps", "steps_per_second", "median_step_ms", "epochs_completed"]
STATE_PREFIX = "state_weight_"
LAST_EPOCHS = 3  # the convergence gate's window (src.report.gate)
MEDIAN_LAST = 5  # the GN paper's measurement: median validation error of the final 5 epochs
NOT_COUNTED_FILE = "not_counted.csv"

NORM_INFO = ("label", "family", "order", "color", "shift", "batch_dependent")


@dataclass
class Skipped:
    """A run found but not counted, with the reason; ``study`` when the record names one."""

    path: str
    reason: str
    study: str | None = None
    status: str | None = None
    cell: str | None = None  # "norm@batch" when the record names them
    config: dict[str, Any] | None = None  # the record's resolved config (a recipe report names its cell)


@dataclass
class RunSet:
    """Counted runs (one row each), the runs not counted, and each study's ``report`` block.

    ``curves`` maps a counted run's ``run_dir`` to its per-epoch curve (runs that recorded none have
    none); ``records`` lists, per study, every record read (counted or not), for the report to keep as
    the study's ``runs.jsonl``; ``source`` says what the runs were read from."""

    runs: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    records: dict[str, list[RunRecord]] = field(default_factory=dict)
    source: str = "records"


def mixture_weights(norm_state: Any) -> dict[str, float]:
    """Mean mixture weight per source over all layers of a run's ``norm_state``.

    The one producer, :meth:`src.norms.SwitchableNorm2d.record_state`, writes per layer
    ``{"mean_weights": {source: w}, "var_weights": {source: w}}`` (sources ``in``, ``ln``, ``bn``).
    Returns ``state_mean_weight_<source>`` and ``state_var_weight_<source>`` (means over layers) and
    ``state_weight_<source>`` (the mean over both kinds and all layers); empty for any other shape.
    """
    if not isinstance(norm_state, dict):
        return {}
    collected: dict[str, list[float]] = {}
    for layer in norm_state.values():
        if not isinstance(layer, dict):
            continue
        for kind in ("mean", "var"):
            weights = layer.get(f"{kind}_weights")
            if not isinstance(weights, dict):
                continue
            for source, value in weights.items():
                if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
                    collected.setdefault(f"{STATE_PREFIX}{source}", []).append(float(value))
                    collected.setdefault(f"state_{kind}_weight_{source}", []).append(float(value))
    return {key: sum(values) / len(values) for key, values in sorted(collected.items())}


def flatten(record: RunRecord, run_dir: str) -> dict[str, Any]:
    """One flat row: identity, metrics, timing, what the norm says about itself (``norm_<key>``),
    norm-state weights, provenance."""
    environment = record.environment
    row: dict[str, Any] = record.identity()
    row["status"] = record.status
    row["lr"] = record.lr
    row.update({key: record.metrics.get(key) for key in METRICS})
    row.update({key: record.timing.get(key) for key in TIMING})
    row["num_parameters"] = record.num_parameters
    # a JSON list, because override values may hold commas (model.widths=[16,32])
    row["overrides"] = json.dumps([str(o) for o in record.overrides])
    row["launch"] = json.dumps(record.launch, sort_keys=True) if isinstance(record.launch, dict) else None
    row["device"] = environment.get("device")
    row["hostname"] = (environment.get("machine") or {}).get("hostname")
    row["git_commit"] = trained_by_commits(record) or environment.get("git_commit")
    row["started_at"] = record.started_at
    row["finished_at"] = record.finished_at
    row["run_dir"] = run_dir
    if record.reused_from:  # copied from another study's sweep (reuse_from): the study it trained for
        row["reused_from"] = record.reused_from.get("study") or "another study"
    row.update({f"norm_{key}": record.norm_info[key] for key in NORM_INFO if key in record.norm_info})
    row.update(mixture_weights(record.norm_state))
    return row


def trained_by_commits(record: RunRecord) -> str | None:
    """A resumed run trained by more than one commit: each in order, ``a then b`` (``unknown`` for a
    segment from a checkpoint that did not say); None when one commit trained it all."""
    commits = [segment.get("git_commit") or "unknown" for segment in record.timing.get("trained_by") or []]
    ordered = list(dict.fromkeys(commits))
    return " then ".join(ordered) if len(ordered) > 1 else None


BASE_COLUMNS = list(flatten(RunRecord(), "x").keys())


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _why_not_counted(run: RunRecord) -> str | None:
    record = run.to_dict()
    status = record.get("status")
    if status != "completed":
        error = str(record.get("error") or "").strip()
        first_line = error.splitlines()[0] if error else ""
        if status == "running":
            return "status 'running': still running, or killed before it could finish"
        if status == "diverged":
            return f"status 'diverged' (the loss became non-finite): {first_line or 'no detail recorded'}"
        return f"status {status!r}: {first_line or 'no error recorded'}"
    if not _finite((record.get("metrics") or {}).get("test_error")):
        return "completed but has no finite metrics.test_error (partial record)"
    for key in ("norm", "batch", "dataset", "model"):
        if record.get(key) is None:
            return f"completed but has no {key!r} (partial record)"
    try:
        int(record["batch"])
    except (TypeError, ValueError):
        return f"batch {record['batch']!r} is not an integer"
    return None


def _record_sources(directory: Path) -> tuple[list[Path], list[Skipped]]:
    """``result.json`` and ``runs.jsonl`` files under ``directory`` (or ``directory`` itself when it is
    one), and job directories that have no record (interrupted runs)."""
    if directory.is_file():
        return [directory], []
    paths = sorted([*directory.rglob(RECORD_FILE), *directory.rglob(RUNS_FILE)])
    with_record = {p.parent for p in paths}
    orphans = [
        Skipped(str(hydra_dir.parent), "no result.json: the run was interrupted or is still running")
        for hydra_dir in sorted(directory.rglob(".hydra"))
        if hydra_dir.is_dir() and hydra_dir.parent not in with_record
    ]
    return paths, orphans


def _records_in(path: Path) -> Iterator[tuple[str, RunRecord | str]]:
    """(where, record or why unreadable) for a ``result.json`` or each line of a ``runs.jsonl``.

    A schema-0 ``result.json`` without a curve gets the one of ``metrics.csv`` beside it."""
    if path.name == RUNS_FILE:
        try:
            lines = read_runs(path)
        except (OSError, UnicodeDecodeError) as error:
            yield str(path), f"unreadable record: {type(error).__name__}: {error}"
            return
        for number, item in lines:
            yield f"{path}:{number}", item if isinstance(item, RunRecord) else f"unreadable record: {item}"
        return
    try:
        record = RunRecord.from_dict(read_record(path))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        yield str(path), f"unreadable record: {type(error).__name__}: {error}"
        return
    if not record.curve:
        record.curve = curve_points(read_curve(path.parent))
    if not record.run_dir:
        record.run_dir = str(path.parent)
    yield str(path), record


Paths = str | os.PathLike[str] | Iterable[str | os.PathLike[str]]


def as_paths(path_or_paths: Paths) -> list[Path]:
    """One path (a string or a ``Path``) or several, as a list: a string is one path, never its letters."""
    if isinstance(path_or_paths, str | os.PathLike):
        return [Path(path_or_paths)]
    return [Path(path) for path in path_or_paths]


def _copy_key(record: RunRecord) -> tuple[str, str, str, str]:
    """What makes two records the same record: run directory, start, finish and status."""
    run_dir = str(Path(str(record.run_dir)).resolve()) if record.run_dir else ""
    return run_dir, str(record.started_at or ""), str(record.finished_at or ""), str(record.status)


def _repeat_key(record: RunRecord) -> tuple[Any, ...]:
    """What makes a second completed record a repeat, not another seed: the same study and config hash (the
    same computation, however its overrides were spelled: ``norm=bn`` and ``norm=bn seed=0`` in two run
    directories); for a record without a hash, the same identity and overrides (loggers aside)."""
    if record.config_hash:
        return (str(record.study), str(record.config_hash))
    overrides = tuple(sorted(str(o) for o in record.overrides if not str(o).startswith("logger")))
    return (*record.identity().values(), overrides)


def _repeat_reason(record: RunRecord) -> str:
    if record.config_hash:
        return f"same study and config hash {record.config_hash}: the same computation again, not another seed"
    return "same study, overrides and seed; loggers aside"


def load_run_set(directories: Paths) -> RunSet:
    """Every record under ``directories`` (one path or several, searched recursively), counted or not."""
    rows: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    specs: dict[str, tuple[str, dict[str, Any]]] = {}
    seen_files: set[Path] = set()
    seen_runs: dict[tuple, str] = {}
    seen_records: set[tuple[str, str, str, str]] = set()  # a record read twice is one run
    curves: dict[str, pd.DataFrame] = {}
    kept: dict[str, list[RunRecord]] = {}
    for directory in as_paths(directories):
        if not directory.exists():
            skipped.append(Skipped(str(directory), "directory does not exist"))
            continue
        paths, orphans = _record_sources(directory)
        skipped.extend(orphans)
        for path in paths:
            resolved = path.resolve()
            if resolved in seen_files:
                continue
            seen_files.add(resolved)
            for where, record in _records_in(path):
                if isinstance(record, str):
                    skipped.append(Skipped(where, record))
                    continue
                if record.run_dir:
                    copy = _copy_key(record)
                    if copy in seen_records:
                        continue  # its result.json and a report's runs.jsonl copy: one run
                    seen_records.add(copy)
                study = str(record.study) if record.study is not None else None
                spec = record.config.get("report")
                if study and isinstance(spec, dict):
                    stamp = str(record.finished_at or "")
                    if study not in specs or stamp >= specs[study][0]:
                        specs[study] = (stamp, spec)
                reason = _why_not_counted(record)
                if reason:
                    kept.setdefault(study or "", []).append(record)
                    cell = f"{record.norm}@{record.batch}" if record.norm and record.batch else None
                    # named by its run's record file wherever it was read (result.json or a report's
                    # runs.jsonl), so a report rebuilt from runs.jsonl lists it as the first one did
                    named = str(Path(str(record.run_dir)) / RECORD_FILE) if record.run_dir else where
                    skipped.append(Skipped(named, reason, study, record.status, cell, record.config or None))
                    continue
                key = _repeat_key(record)
                if key in seen_runs:
                    reason = f"duplicate of {seen_runs[key]} ({_repeat_reason(record)})"
                    skipped.append(Skipped(where, reason, study))
                    continue
                seen_runs[key] = where
                kept.setdefault(study or "", []).append(record)
                row = flatten(record, str(record.run_dir))
                curve = curve_frame(record.curve)
                if curve is not None:
                    curves[row["run_dir"]] = curve
                row.update(summarize_curve(curve, LAST_EPOCHS, MEDIAN_LAST))
                rows.append(row)
    counted = [record for part in kept.values() for record in part if _why_not_counted(record) is None]
    varying = varying_config(counted)
    by_dir = {str(record.run_dir): record for record in counted}
    for row in rows:
        leaves = config_leaves(by_dir[row["run_dir"]].config) if row["run_dir"] in by_dir else {}
        row.update({key: leaves.get(key) for key in varying if key not in row})
    extra = sorted({key for row in rows for key in row} - set(BASE_COLUMNS))
    frame = _typed(pd.DataFrame(rows, columns=BASE_COLUMNS + extra))
    return RunSet(frame, skipped, {study: spec for study, (_, spec) in specs.items()}, curves, kept)


def _typed(frame: pd.DataFrame) -> pd.DataFrame:
    if not frame.empty:
        frame["batch"] = frame["batch"].astype(int)
        for column in IDENTITY:
            if column not in ("batch", "seed", "epochs"):
                frame[column] = frame[column].astype(str)
    return frame


def load_runs_csv(path: str | Path) -> RunSet:
    """A committed ``results/<study>/runs.csv`` (the flattened records) as a RunSet.

    No per-epoch curves and no records come with it: the convergence gate can check final training
    losses but not whether a curve had flattened. Runs the earlier report did not count are read from
    ``not_counted.csv`` beside it when present."""
    path = Path(path)
    frame = _typed(pd.read_csv(path))
    if "overrides" in frame:
        frame["overrides"] = [_overrides_json(value) for value in frame["overrides"]]
    skipped = []
    listed = path.parent / NOT_COUNTED_FILE
    if listed.exists():
        for row in pd.read_csv(listed, dtype=str, keep_default_na=False).to_dict("records"):
            skipped.append(
                Skipped(
                    row["path"],
                    row["reason"],
                    row.get("study") or None,
                    row.get("status") or None,
                    row.get("cell") or None,
                )
            )
    return RunSet(frame, skipped, source=f"runs.csv: {path}")


def _overrides_json(value: Any) -> str:
    """Overrides as a JSON list; earlier runs.csv files joined them with commas (``norm=bn,batch=2``),
    split here at the commas outside brackets."""
    text = "" if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)
    if text.startswith("["):
        return text
    parts, depth, current = [], 0, ""
    for char in text:
        depth += {"[": 1, "(": 1, "{": 1, "]": -1, ")": -1, "}": -1}.get(char, 0)
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    if current:
        parts.append(current)
    return json.dumps(parts)


def not_counted_csv(skipped: list[Skipped]) -> str:
    """The runs not counted as CSV (path, reason, study, status, cell), so a report from runs.csv keeps them."""
    rows = [{"path": s.path, "reason": s.reason, "study": s.study, "status": s.status, "cell": s.cell} for s in skipped]
    return pd.DataFrame(rows, columns=["path", "reason", "study", "status", "cell"]).to_csv(index=False)


SETTINGS = ["study", "dataset", "model", "norm", "batch", "epochs", "seed"]
DERIVED_PREFIXES = ("state_", "curve_", "val_error_drop_last", "val_error_median_last")


def setting_columns(runs: pd.DataFrame) -> list[str]:
    """The columns of ``runs`` that say how a run was set up: study, dataset, model, norm, batch, epochs,
    seed, then every config key the runs differ in (``dataset.augment``, ``standardize_weights``, …), in
    the order found. Metrics, timing, provenance, what a norm says about itself, and a config key that only
    repeats one of the first seven (``norm.name``, ``trainer.max_epochs``) are not settings."""
    norm_info = {f"norm_{key}" for key in NORM_INFO}
    first = [c for c in SETTINGS if c in runs]
    identity = [runs[c].map(_text) for c in first]
    config = []
    for column in runs.columns:
        if column in BASE_COLUMNS or column in norm_info or str(column).startswith(DERIVED_PREFIXES):
            continue
        values = runs[column].map(_text)
        if not any(values.equals(known) for known in identity):
            config.append(column)
    return first + config


def _text(value: Any) -> str:
    """A value as compared across columns: whole floats as integers, missing values empty."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def tidy(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with its setting columns first (:func:`setting_columns`), then the metrics, then the rest."""
    first = setting_columns(runs)
    metrics = [c for c in [*METRICS, *TIMING] if c in runs and c not in first]
    return runs[[*first, *metrics, *[c for c in runs.columns if c not in first and c not in metrics]]]


def load_runs(path_or_paths: Paths) -> pd.DataFrame:
    """The completed runs under one path or several (a multirun directory, a ``results/<study>`` folder
    with its ``runs.jsonl``, a single ``result.json``), one tidy row per run: a column per setting (study,
    dataset, model, norm, batch, epochs, seed and every config key the runs differ in, e.g.
    ``dataset.augment``), then ``test_error``, ``val_error``, ``best_val_error``, ``train_loss`` and the
    rest of runs.csv's columns. The runs not counted are in ``.attrs["not_counted"]`` as (path, reason)
    pairs; :func:`load_run_set` gives them with their curves and records.

    >>> runs = load_runs("results/demo")  # doctest: +SKIP
    >>> runs.groupby(["norm", "batch"])["test_error"].mean()  # doctest: +SKIP
    """
    run_set = load_run_set(path_or_paths)
    runs = tidy(run_set.runs)
    runs.attrs["not_counted"] = [(s.path, s.reason) for s in run_set.skipped]
    return runs
