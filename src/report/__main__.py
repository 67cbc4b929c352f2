"""``python -m src.report DIR [DIR ...]``: tables, plots and claim verdicts from the run records.

For each study found in the records (or the one given by ``--study``) it writes ``<out>/<study>/``:
runs.csv, not_counted.csv, summary.csv, summary.md, claims.md, claims.csv, the figures (error_vs_batch,
error_by_norm and learning_curves, each as .png and .svg) and meta.json, keeps the records it read
(counted or not, each with its per-epoch curve) as ``<out>/<study>/runs.jsonl``, one compact record a line — so that
``python -m src.report <out>/<study>`` rebuilds every file from them alone — and regenerates
``<out>/README.md``, the index of every study under ``<out>``. Everything is computed in memory first and
each file is replaced atomically, so a failure leaves the earlier report intact; a figure that cannot be
drawn is a warning, not a failure. What the report is given is checked first (:mod:`src.report.inputs`): a
``--claims`` file that does not exist, a ``--from-runs-csv`` that is not a report's runs.csv, or a claim
naming a norm the study never ran ends the report with one line and status 2, nothing written.

``--from-runs-csv results/<study>/runs.csv`` reports from a committed runs.csv instead (the flattened
records, for studies whose records were not kept); the report says so, and without per-epoch curves
the convergence gate checks final training losses only. A single directory holding a ``runs.csv`` and
no record at all (a study committed before records were kept) is read that way too.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import sys
import warnings
from collections.abc import Callable
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from omegaconf import OmegaConf

from src.report.claims import VERDICTS, ClaimResult, claims_of, evaluate_claims, named_columns
from src.report.commands import sweep_commands
from src.report.curves import median_last
from src.report.inputs import check_claim_norms, check_claims_file, read_runs_csv
from src.report.learning_curves import learning_curves
from src.report.load import (
    MEDIAN_LAST,
    RunSet,
    Skipped,
    load_run_set,
    not_counted_csv,
    tidy,
    with_config_columns,
)
from src.report.markdown import render_claims, render_index, render_summary
from src.report.norms import NormCatalog
from src.report.plots import choose_bar_batch, error_by_norm, error_vs_batch
from src.report.recipes import recipe_report
from src.report.registration import check_registration
from src.report.slices import by_setting, design_columns
from src.report.spec import SpecError, check_spec
from src.report.tables import summarize
from src.run.atomic import write_bytes_atomic, write_text_atomic
from src.run.provenance import PROJECT_ROOT, git_commit, inside_project, machine_description
from src.run.records import RECORD_FILE, RUNS_FILE, RunRecord, write_runs

EXPERIMENTS = PROJECT_ROOT / "conf" / "experiment"  # the study files (sweeps/<study>.yaml includes one)
LEGACY_RECORDS = "records"  # where reports before runs.jsonl copied the records


def read_spec_file(path: Path) -> dict[str, Any] | None:
    """The ``report`` block of a study file, as Hydra would compose it: a study that names another study
    of its folder in ``defaults`` (``- norm_compare``) inherits that study's block, and its own keys are
    merged over it (mappings merge, lists such as ``claims`` are replaced). Only the ``report`` key is
    read, so Hydra itself is not needed."""
    block = _report_block(Path(path), seen=())
    return block if block else None


def _report_block(path: Path, seen: tuple[Path, ...]) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        warnings.warn(f"cannot read claims from {path}: {error}", stacklevel=2)
        return {}
    if not isinstance(data, dict):
        return {}
    own = data.get("report") if isinstance(data.get("report"), dict) else {}
    merged: dict[str, Any] = {}
    for entry in data.get("defaults") or []:
        if isinstance(entry, str) and entry != "_self_" and "/" not in entry and path not in seen:
            parent = path.with_name(f"{entry}.yaml")
            if parent.exists():
                merged = _merge(merged, _report_block(parent, (*seen, path)))
    return _merge(merged, own)


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    """``over`` merged into ``base`` by OmegaConf, as Hydra composes: mappings merge, lists are replaced."""
    merged = OmegaConf.to_container(OmegaConf.merge(base, over))
    return merged if isinstance(merged, dict) else {}


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
        if not Path(remembered).exists():
            warnings.warn(f"{study}: {remembered} (claims_from in its meta.json) not found", stacklevel=2)
        else:
            spec = read_spec_file(Path(remembered))
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
) -> dict[str, str | bytes]:
    """Every file of ``<out>/<study>/``, rendered in memory."""
    curves = curves or {}
    runs = with_median(runs, curves, spec)
    catalog = NormCatalog.from_runs(runs)  # labels, order and colours: what each norm says about itself
    named = [column for claim in claims_of(spec) for column in named_columns(claim)]
    named += list(spec.get("factors") or [])  # a recipe pilot's factors: never pooled into one cell either
    table_runs = by_setting(runs, named)  # tables and plots: one slice per setting of a varying design column
    design = design_columns(runs, named)
    summary = summarize(table_runs, catalog)
    claims = evaluate_claims(runs, spec, curves, skipped)
    # each claim's registration: the study file's git history against the runs' start (never fails)
    study_file = context.get("claims_from") or EXPERIMENTS / f"{study}.yaml"
    registration = check_registration(study_file, runs.get("started_at", []))
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("dirs", nargs="*", help="directories searched recursively for result.json")
    parser.add_argument(
        "--from-runs-csv",
        metavar="RUNS_CSV",
        help="report from a committed results/<study>/runs.csv instead of run records (labelled as such)",
    )
    parser.add_argument("--out", default="results", help="results root (default: results)")
    parser.add_argument("--study", help="write every run under this study name (default: each run's own study)")
    parser.add_argument(
        "--claims",
        help="a study file (conf/experiment/<study>.yaml) whose report block to use instead of the one in the records",
    )
    parser.add_argument(
        "--wandb",
        action="store_true",
        help="also publish each study as one W&B run in its group (job_type report; offline unless logged in)",
    )
    parser.add_argument("--plan", metavar="STUDY_YAML", help="seeds per claim from a pilot: --plan STUDY_YAML --help")
    given = sys.argv[1:] if argv is None else list(argv)
    if any(a == "--plan" or a.startswith("--plan=") for a in given):  # planned power: src/report/plan.py
        from src.report.plan import main as plan_main

        return plan_main(given, read_spec_file)
    args = parser.parse_args(argv)
    command = "python -m src.report " + shlex.join(sys.argv[1:] if argv is None else argv)
    out = Path(args.out)

    if bool(args.dirs) == bool(args.from_runs_csv):
        parser.error("give run directories or --from-runs-csv, not both and not neither")
    committed = committed_runs_csv(args.dirs)
    if committed is not None:
        args.from_runs_csv, args.dirs = str(committed), []
    try:  # what the report was given: one line and status 2, nothing written
        if args.claims:
            check_claims_file(args.claims)
        run_set = read_runs_csv(args.from_runs_csv) if args.from_runs_csv else None
    except SpecError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if run_set is not None:
        runs_source = (
            f"`{args.from_runs_csv}`, a committed runs.csv (the flattened run records; the records themselves"
            " were not kept): no per-epoch curves, so the convergence gate checks final train losses only"
        )
    else:
        run_set = load_run_set(args.dirs)
        runs_source = f"run records (result.json or runs.jsonl), kept in `{RUNS_FILE}`"
    for item in run_set.skipped:
        print(f"not counted: {item.path}: {item.reason}", file=sys.stderr)
    runs = run_set.runs
    if runs.empty:
        print(f"no completed runs under {', '.join(args.dirs or [args.from_runs_csv])}", file=sys.stderr)
        return 1
    if args.study:
        runs = runs.assign(study=args.study)
        for item in run_set.skipped:
            item.study = None
        specs = list(run_set.specs.values())
        if args.study not in run_set.specs and specs:
            run_set.specs[args.study] = specs[-1]
    machine = machine_description()
    base = {
        "command": command,
        # the code's commit: the results directory this report rewrites does not make it "dirty"
        "commit": git_commit(ignore=inside_project(out)),
        "machine": f"{machine['hostname']} ({machine['platform']}, {machine['cpu_count']} CPUs)",
        "written_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    rendered: dict[str, dict[str, str | bytes]] = {}
    for study, part in runs.groupby("study", sort=True):
        study = str(study)
        remembered = None if args.claims else remembered_claims(args.dirs, study)
        spec, source, claims_from = study_spec(study, run_set, args.claims, remembered)
        try:
            check_spec(spec)
            check_claim_norms(spec, part, skipped_for(study, run_set.skipped))
        except SpecError as error:
            print(f"error: {source or study}: {error}", file=sys.stderr)
            return 2
        context = {**base, "spec_source": source, "runs_source": runs_source, "claims_from": claims_from}
        named = [column for claim in claims_of(spec) for column in named_columns(claim)]
        named += list(spec.get("factors") or [])  # each factor's value from the resolved config
        records = [record for kept in run_set.records.values() for record in kept]
        part = with_config_columns(part.reset_index(drop=True), records, named)
        rendered[study] = build_study(study, part, skipped_for(study, run_set.skipped), spec, context, run_set.curves)
    for study, files in rendered.items():
        write_files(out / study, files)
        if not args.from_runs_csv:
            if args.study:  # every run was renamed into this one study
                records = [r for part in run_set.records.values() for r in part]
            else:
                records = run_set.records.get(study, [])
            keep_records(out / study, records)
        print(files["summary.md"])
        print(f"wrote {out / study}/: {', '.join(sorted(files))}")
        if args.wandb:  # never fails the report: a W&B problem is one warning line
            from src.report.wandb_report import publish_study

            publish_study(study, files, Path("multirun") / study)  # beside the study's runs, out of results/
    try:
        write_text_atomic(out / "README.md", render_index(index_studies(out), base["written_at"]))
    except Exception as error:  # the index is a convenience; the study reports are written
        warnings.warn(f"{out / 'README.md'} not written: {type(error).__name__}: {error}", stacklevel=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
