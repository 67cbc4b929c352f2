"""Find run records, flatten them into one pandas row per run, and list the runs not counted.

Only run records are read (never training code): ``result.json``, and beside it the per-epoch
``metrics.csv`` when the run logged one (:mod:`src.report.curves`). A run is counted when its record is a
readable JSON object with ``status: completed`` and a finite ``metrics.test_error``; everything else
found under the given directories is listed with the reason it was not counted: unreadable or corrupt
records, failed or unfinished runs, job directories without a record (interrupted runs), and the same
run found twice.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from src.records import RECORD_FILE, read_record
from src.report.curves import read_curve, summarize_curve

IDENTITY = ["study", "dataset", "model", "norm", "batch", "seed", "epochs"]
METRICS = ["test_error", "val_error", "best_val_error", "train_loss"]
TIMING = ["fit_seconds", "train_seconds", "train_steps", "steps_per_second", "median_step_ms", "epochs_completed"]
STATE_PREFIX = "state_weight_"
LAST_EPOCHS = 3  # the convergence gate's window (src.report.gate)
MEDIAN_LAST = 5  # the GN paper's measurement: median validation error of the final 5 epochs
NOT_COUNTED_FILE = "not_counted.csv"

# Names under which a mixture (switchable norm) may report its components, mapped to one short name.
COMPONENTS = {
    "bn": "bn",
    "batch": "bn",
    "batchnorm": "bn",
    "in": "in",
    "instance": "in",
    "instancenorm": "in",
    "ln": "ln",
    "layer": "ln",
    "layernorm": "ln",
    "gn": "gn",
    "group": "gn",
    "groupnorm": "gn",
}
NAME_LISTS = ("names", "components", "sources", "order", "norms", "keys")


@dataclass
class Skipped:
    """A run found but not counted, with the reason; ``study`` when the record names one."""

    path: str
    reason: str
    study: str | None = None
    status: str | None = None
    cell: str | None = None  # "norm@batch" when the record names them


@dataclass
class RunSet:
    """Counted runs (one row each), the runs not counted, and each study's ``report`` block.

    ``curves`` maps a counted run's ``run_dir`` to its per-epoch curve (runs without ``metrics.csv``
    have none); ``record_dirs`` lists, per study, the run directories whose ``result.json`` was read
    (counted or not), for the report to archive; ``source`` says what the runs were read from."""

    runs: pd.DataFrame
    skipped: list[Skipped] = field(default_factory=list)
    specs: dict[str, dict[str, Any]] = field(default_factory=dict)
    curves: dict[str, pd.DataFrame] = field(default_factory=dict)
    record_dirs: dict[str, list[Path]] = field(default_factory=dict)
    source: str = "records"


def _tokens(path: tuple[str, ...]) -> list[str]:
    return [token for part in path for token in re.split(r"[^a-z0-9]+", str(part).lower()) if token]


def _numeric_leaves(node: Any, path: tuple[str, ...] = ()) -> Iterable[tuple[tuple[str, ...], float]]:
    """(key path, number) for every numeric leaf; a list of numbers next to a list of names is zipped."""
    if isinstance(node, dict):
        names = next(
            (node[k] for k in NAME_LISTS if isinstance(node.get(k), list) and all(isinstance(n, str) for n in node[k])),
            None,
        )
        for key, value in node.items():
            if key in NAME_LISTS:
                continue
            if names and isinstance(value, list) and len(value) == len(names):
                value = dict(zip(names, value, strict=True))
            yield from _numeric_leaves(value, (*path, str(key)))
    elif isinstance(node, bool):
        return
    elif isinstance(node, int | float) and math.isfinite(float(node)):
        yield path, float(node)


def mixture_weights(norm_state: Any) -> dict[str, float]:
    """Mean weight per component (``bn``, ``in``, ``ln``, …) over all layers in a run's ``norm_state``.

    Read defensively: any numeric leaf whose key path names a component (``{"mean_weights": {"bn": …}}``,
    ``{"mean_bn": …}``, or a list of numbers beside a list of names) counts. Returns
    ``{"state_weight_bn": …, "state_mean_weight_bn": …, "state_var_weight_bn": …}``, the last two when
    the path says ``mean`` or ``var``; an empty dict when nothing is recognised.
    """
    if not isinstance(norm_state, dict):
        return {}
    collected: dict[str, list[float]] = {}
    for path, value in _numeric_leaves(norm_state):
        tokens = _tokens(path[1:] if len(path) > 1 else path)  # path[0] is the layer's name
        component = next((COMPONENTS[t] for t in reversed(tokens) if t in COMPONENTS), None)
        if component is None:
            continue
        collected.setdefault(f"{STATE_PREFIX}{component}", []).append(value)
        for kind in ("mean", "var"):
            if kind in tokens:
                collected.setdefault(f"state_{kind}_weight_{component}", []).append(value)
    return {key: sum(values) / len(values) for key, values in sorted(collected.items())}


def flatten(record: dict[str, Any], path: Path) -> dict[str, Any]:
    """One flat row: identity, metrics, timing, norm-state weights, provenance."""
    environment = record.get("environment") or {}
    metrics = record.get("metrics") or {}
    timing = record.get("timing") or {}
    row: dict[str, Any] = {key: record.get(key) for key in IDENTITY}
    row["status"] = record.get("status")
    row["lr"] = record.get("lr")
    row.update({key: metrics.get(key) for key in METRICS})
    row.update({key: timing.get(key) for key in TIMING})
    row["num_parameters"] = record.get("num_parameters")
    # a JSON list, because override values may hold commas (model.widths=[16,32])
    row["overrides"] = json.dumps([str(o) for o in record.get("overrides") or []])
    launch = record.get("launch")
    row["launch"] = json.dumps(launch, sort_keys=True) if isinstance(launch, dict) else None
    row["device"] = environment.get("device")
    row["hostname"] = (environment.get("machine") or {}).get("hostname")
    row["git_commit"] = environment.get("git_commit")
    row["started_at"] = record.get("started_at")
    row["finished_at"] = record.get("finished_at")
    row["run_dir"] = str(path.parent)
    row.update(mixture_weights(record.get("norm_state")))
    return row


BASE_COLUMNS = list(flatten({}, Path("x")).keys())


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _why_not_counted(record: dict[str, Any]) -> str | None:
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


def _record_paths(directory: Path) -> tuple[list[Path], list[Skipped]]:
    """result.json files under ``directory``, and job directories that have none (interrupted runs)."""
    if directory.is_file():
        return [directory], []
    paths = sorted(directory.rglob(RECORD_FILE))
    with_record = {p.parent for p in paths}
    orphans = [
        Skipped(str(hydra_dir.parent), "no result.json: the run was interrupted or is still running")
        for hydra_dir in sorted(directory.rglob(".hydra"))
        if hydra_dir.is_dir() and hydra_dir.parent not in with_record
    ]
    return paths, orphans


def load_run_set(directories: Iterable[str | Path]) -> RunSet:
    """Every record under ``directories`` (searched recursively), counted or not."""
    rows: list[dict[str, Any]] = []
    skipped: list[Skipped] = []
    specs: dict[str, tuple[str, dict[str, Any]]] = {}
    seen_files: set[Path] = set()
    seen_runs: dict[tuple, str] = {}
    curves: dict[str, pd.DataFrame] = {}
    record_dirs: dict[str, list[Path]] = {}
    for directory in directories:
        directory = Path(directory)
        if not directory.exists():
            skipped.append(Skipped(str(directory), "directory does not exist"))
            continue
        paths, orphans = _record_paths(directory)
        skipped.extend(orphans)
        for path in paths:
            resolved = path.resolve()
            if resolved in seen_files:
                continue
            seen_files.add(resolved)
            try:
                record = read_record(path)
            except (OSError, ValueError, UnicodeDecodeError) as error:
                skipped.append(Skipped(str(path), f"unreadable record: {type(error).__name__}: {error}"))
                continue
            study = record.get("study")
            study = str(study) if study is not None else None
            spec = (record.get("config") or {}).get("report") if isinstance(record.get("config"), dict) else None
            if study and isinstance(spec, dict):
                stamp = str(record.get("finished_at") or "")
                if study not in specs or stamp >= specs[study][0]:
                    specs[study] = (stamp, spec)
            reason = _why_not_counted(record)
            if reason:
                record_dirs.setdefault(study or "", []).append(path.parent)
                cell = f"{record['norm']}@{record['batch']}" if record.get("norm") and record.get("batch") else None
                skipped.append(Skipped(str(path), reason, study, record.get("status"), cell))
                continue
            key = (
                study,
                record.get("dataset"),
                record.get("model"),
                record.get("norm"),
                record.get("batch"),
                record.get("seed"),
                record.get("epochs"),
                tuple(sorted(str(o) for o in record.get("overrides") or [] if not str(o).startswith("logger"))),
            )
            if key in seen_runs:
                skipped.append(
                    Skipped(
                        str(path),
                        f"duplicate of {seen_runs[key]} (same study, overrides and seed; loggers aside)",
                        study,
                    )
                )
                continue
            seen_runs[key] = str(path)
            record_dirs.setdefault(study or "", []).append(path.parent)
            row = flatten(record, path)
            curve = read_curve(path.parent)
            if curve is not None:
                curves[row["run_dir"]] = curve
            row.update(summarize_curve(curve, LAST_EPOCHS, MEDIAN_LAST))
            rows.append(row)
    extra = sorted({key for row in rows for key in row} - set(BASE_COLUMNS))
    frame = _typed(pd.DataFrame(rows, columns=BASE_COLUMNS + extra))
    return RunSet(frame, skipped, {study: spec for study, (_, spec) in specs.items()}, curves, record_dirs)


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


def load_runs(directories: Iterable[str | Path]) -> tuple[pd.DataFrame, list[tuple[str, str]]]:
    """Completed runs under ``directories`` as a DataFrame, and (path, reason) for runs not counted."""
    run_set = load_run_set(directories)
    return run_set.runs, [(s.path, s.reason) for s in run_set.skipped]


def read_json_or_none(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
