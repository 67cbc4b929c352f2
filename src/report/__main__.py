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
import shlex
import sys
import warnings
from datetime import datetime, timezone
from pathlib import Path

from src.report.claims import claims_of, named_columns
from src.report.config_columns import with_config_columns
from src.report.inputs import check_claim_norms, check_claims_file, read_runs_csv
from src.report.load import load_run_set
from src.report.markdown import render_index
from src.report.pipeline import (
    build_study,
    committed_runs_csv,
    index_studies,
    keep_records,
    read_spec_file,
    remembered_claims,
    skipped_for,
    study_spec,
    write_files,
)
from src.report.spec import SpecError, check_spec
from src.run.atomic import write_text_atomic
from src.run.config_keys import other_factors
from src.run.provenance import git_commit, inside_project, machine_description
from src.run.records import RUNS_FILE


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
    if out.exists() and not out.is_dir():
        print(
            f"error: --out = {args.out!r}: a file, not a directory; give the results root (default: results)",
            file=sys.stderr,
        )
        return 2
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
        counted = set(part["run_dir"].astype(str))
        factors = other_factors([(r.norm, int(r.batch), r.config) for r in records if str(r.run_dir) in counted])
        part = with_config_columns(part.reset_index(drop=True), records, [*named, *factors])
        skipped = skipped_for(study, run_set.skipped)
        rendered[study] = build_study(study, part, skipped, spec, context, run_set.curves, factors)
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
