"""The report's pipeline, apart from its command line (:mod:`src.report.__main__`): read a study's claims
(the study file, ``--claims`` or the last report's), build every table, figure and verdict of one study in
memory, and write its folder atomically; the index of a results folder.

Data flows one way: run records (``result.json`` / ``runs.jsonl``) → :func:`build_study` → the files of
``<out>/<study>/``. The CLI parses arguments and calls these functions; a notebook may call them too.
"""

from __future__ import annotations

import json
import shutil
import warnings
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from src.report.claims import VERDICTS, ClaimResult, claims_of, evaluate_claims, named_columns
from src.report.commands import sweep_commands
from src.report.curves import median_last
from src.report.learning_curves import learning_curves
from src.report.load import (
    MEDIAN_LAST,
    RunSet,
    Skipped,
    not_counted_csv,
    tidy,
)
from src.report.markdown import render_claims, render_summary
from src.report.norm_info import NormCatalog
from src.report.plots import choose_bar_batch, error_by_norm, error_vs_batch
from src.report.recipe_section import recipe_report
from src.report.registration import check_registration
from src.report.slices import by_setting, design_columns
from src.report.tables import summarize
from src.run.atomic import write_bytes_atomic, write_text_atomic
from src.run.provenance import PROJECT_ROOT
from src.run.records import RECORD_FILE, RUNS_FILE, RunRecord, write_runs
from src.run.study_file import report_block

EXPERIMENTS = PROJECT_ROOT / "conf" / "experiment"  # the study files (sweeps/<study>.yaml includes one)
LEGACY_RECORDS = "records"  # where reports before runs.jsonl copied the records


def read_spec_file(path: Path) -> dict[str, Any] | None:
    """The ``report`` block of a study file, as Hydra would compose it: a study that names another study
    of its folder in ``defaults`` (``- norm_compare``) inherits that study's block, and its own keys are
    merged over it (mappings merge, lists such as ``claims`` are replaced); see :mod:`src.run.study_file`.
    A file that cannot be read gives a warning and None."""
    try:
        return report_block(Path(path))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        warnings.warn(f"cannot read claims from {path}: {error}", stacklevel=2)
        return None


def remembered_claims(directories: list[str], study: str) -> str | None:
    """The claims file the last report of ``study`` was given (``claims_from`` in the ``meta.json`` of a
    results folder among ``directories``): rebuilding a committed study then judges the same claims."""
    for directory in directories:
        try:
            meta = json.loads((Path(directory) / "meta.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if isinstance(meta, dict) and meta.get("study") == study and meta.get("claims_from"):
            return str(meta["claims_from"])
    return None


def study_spec(
    study: str, run_set: RunSet, claims_file: str | None, remembered: str | None = None
) -> tuple[dict[str, Any], str, str | None]:
    """The study's ``report`` block, where it came from, and the claims file it was read from (None for
    the records' own): the ``--claims`` file, else the one the last report of this results folder used
    (``remembered``), else the run records' resolved config (the newest run), else
    ``conf/experiment/<study>.yaml``."""
    if claims_file:
        spec = read_spec_file(Path(claims_file))
        if spec is not None:
            return spec, f"`{claims_file}` (--claims)", claims_file
    if remembered:
        found = next((path for path in (Path(remembered), PROJECT_ROOT / remembered) if path.is_file()), None)
        if found is None:  # relative: to where the last report ran, which is the project root as a rule
            warnings.warn(f"{study}: {remembered} (claims_from in its meta.json) not found", stacklevel=2)
        else:
            spec = read_spec_file(found)
            if spec is not None:
                return spec, f"`{remembered}` (the claims file of the last report, meta.json's claims_from)", remembered
    if study in run_set.specs:
        return run_set.specs[study], "the run records (`config.report`, from the study file they were run with)", None
    fallback = EXPERIMENTS / f"{study}.yaml"
    if fallback.exists():
        spec = read_spec_file(fallback)
        if spec is not None:
            return spec, f"`conf/experiment/{study}.yaml` (the run records carry none)", None
    return {}, "", None


def skipped_for(study: str, skipped: list[Skipped]) -> list[Skipped]:
    """Runs not counted that belong to ``study``, or whose study is unknown."""
    return [s for s in skipped if s.study in (None, study)]


CLAIM_COLUMNS = list(ClaimResult("", "", "", "", "", "").as_row())


def with_median(runs: pd.DataFrame, curves: dict[str, pd.DataFrame], spec: dict[str, Any]) -> pd.DataFrame:
    """Adds ``val_error_median_last<k>`` for the study's ``median_last: k`` when it is not the default."""
    k = int(spec.get("median_last", MEDIAN_LAST))
    column = f"val_error_median_last{k}"
    if column in runs or not curves:
        return runs
    values = [median_last(curves[d], k) if d in curves else float("nan") for d in runs["run_dir"].astype(str)]
    return runs.assign(**{column: values})


def build_study(
    study: str,
    runs: pd.DataFrame,
    skipped: list[Skipped],
    spec: dict[str, Any],
    context: dict[str, Any],
    curves: dict[str, pd.DataFrame] | None = None,
    settings: Sequence[str] = (),
) -> dict[str, str | bytes]:
    """Every file of ``<out>/<study>/``, rendered in memory. ``settings``: the runs' other factors
    (:func:`src.run.config_keys.other_factors`), which split the tables and plots as the claims' columns do."""
    curves = curves or {}
    runs = with_median(runs, curves, spec)
    catalog = NormCatalog.from_runs(runs)  # labels, order and colours: what each norm says about itself
    named = [column for claim in claims_of(spec) for column in named_columns(claim)]
    named += list(spec.get("factors") or [])  # a recipe pilot's factors: never pooled into one cell either
    named += list(settings)  # any other key the runs differ in: never pooled either
    table_runs = by_setting(runs, named)  # tables and plots: one slice per setting of a varying design column
    design = design_columns(runs, named)
    summary = summarize(table_runs, catalog)
    claims = evaluate_claims(runs, spec, curves, skipped)
    # each claim's registration: the study file's git history against the runs' start (never fails)
    study_file = context.get("claims_from") or EXPERIMENTS / f"{study}.yaml"
    judged_on = {c.id: c.started_at for c in claims if c.started_at}
    registration = check_registration(study_file, runs.get("started_at", []), judged_on)
    files: dict[str, str | bytes] = {}
    figures = draw_figures(study, table_runs, summary, spec, catalog, design, curves, files)
    files["runs.csv"] = tidy(runs).to_csv(index=False)
    files["summary.csv"] = summary.to_csv(index=False)
    files["not_counted.csv"] = not_counted_csv(skipped)
    rows = [{**c.as_row(), "registration": registration.status(c.id)} for c in claims]
    files["claims.csv"] = pd.DataFrame(rows, columns=[*CLAIM_COLUMNS, "registration"]).to_csv(index=False)
    files["summary.md"] = render_summary(study, table_runs, summary, skipped, spec, claims, figures, context, catalog)
    if spec.get("factors"):
        section, recipe_files = recipe_report(runs, list(spec["factors"]), skipped, study, catalog)
        files.update(recipe_files)
        files["summary.md"] += "\n" + section
    prereg = registration.markdown([c.id for c in claims])
    files["claims.md"] = render_claims(study, runs, claims, skipped, spec, context, registration=prereg)
    verdicts = {v: sum(c.verdict == v for c in claims) for v in VERDICTS}
    files["meta.json"] = (
        json.dumps(
            {
                "study": study,
                "title": spec.get("title", ""),
                "runs": len(runs),
                "runs_source": context.get("runs_source", ""),
                "not_counted": len(skipped),
                "slices": sorted({f"{d} · {m}" for d, m in zip(runs["dataset"], runs["model"], strict=True)}),
                "verdicts": verdicts if claims else None,
                "written_at": context["written_at"],
                "command": context["command"],
                # a later report of this folder judges these claims again (remembered_claims)
                "claims_from": context.get("claims_from"),
                "runs_launched_by": sweep_commands(runs),
            },
            indent=2,
        )
        + "\n"
    )
    return files


def draw_figures(
    study: str,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    spec: dict[str, Any],
    catalog: NormCatalog,
    design: list[str],
    curves: dict[str, pd.DataFrame],
    files: dict[str, str | bytes],
) -> dict[str, str]:
    """Each figure the study's runs allow, as PNG and SVG into ``files``; returns {png name: caption}. A
    figure that cannot be drawn is a warning (never worth losing the tables for)."""
    references = [r for r in spec.get("references") or [] if isinstance(r, dict) and r.get("batches")]
    curve = next((r for r in references if len(r["batches"]) > 1), None)
    try:
        batch = choose_bar_batch(summary, spec.get("bar_batch"))
    except (TypeError, ValueError) as error:
        warnings.warn(f"{study}: error_by_norm.png not drawn: report.bar_batch: {error}", stacklevel=2)
        batch = None
    wanted: list[tuple[str, str, Callable[[], tuple[bytes, bytes] | None]]] = []
    if summary["batch"].nunique() > 1:
        draw = partial(error_vs_batch, summary, study, reference=curve, catalog=catalog, design=design)
        wanted.append(("error_vs_batch", "test error vs batch size", draw))
    if batch is not None:
        bars = partial(error_by_norm, runs, summary, study, batch, catalog=catalog, design=design)
        wanted.append(("error_by_norm", f"test error by norm at batch {batch}", bars))
    lines = partial(learning_curves, runs, curves, study, catalog, design)
    wanted.append(("learning_curves", "validation error per epoch", lines))
    figures: dict[str, str] = {}
    for name, caption, draw in wanted:
        try:
            drawn = draw()
        except Exception as error:  # a figure is never worth losing the tables for
            warnings.warn(f"{study}: {name}.png not drawn: {type(error).__name__}: {error}", stacklevel=2)
            continue
        if drawn is not None:
            files[f"{name}.png"], files[f"{name}.svg"] = drawn
            figures[f"{name}.png"] = caption
    return figures


def index_studies(out: Path) -> list[dict[str, Any]]:
    """meta.json of every study directory under ``out`` (a bare entry for older reports without one)."""
    studies = []
    for directory in sorted(p for p in out.iterdir() if p.is_dir()) if out.exists() else []:
        if not (directory / "summary.md").exists():
            continue
        try:
            meta = json.loads((directory / "meta.json").read_text(encoding="utf-8"))
            if not isinstance(meta, dict):
                raise ValueError("not an object")
        except (OSError, ValueError):
            meta = {}
        meta["study"] = directory.name
        studies.append(meta)
    return studies


def keep_records(target: Path, records: list[RunRecord]) -> int:
    """Write ``records`` to ``target/runs.jsonl`` (one compact record a line, atomically); the
    ``records/`` copies earlier reports made are removed (``runs.jsonl`` holds them all)."""
    count = write_runs(target / RUNS_FILE, records)
    shutil.rmtree(target / LEGACY_RECORDS, ignore_errors=True)
    return count


def committed_runs_csv(directories: list[str]) -> Path | None:
    """``<dir>/runs.csv`` when a single directory was given that holds it and no run record at all."""
    if len(directories) != 1:
        return None
    directory = Path(directories[0])
    if not (directory / "runs.csv").is_file():
        return None
    has_records = next(directory.rglob(RECORD_FILE), None) or next(directory.rglob(RUNS_FILE), None)
    return None if has_records else directory / "runs.csv"


def write_files(target: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        if isinstance(content, bytes):
            write_bytes_atomic(target / name, content)
        else:
            write_text_atomic(target / name, content)
