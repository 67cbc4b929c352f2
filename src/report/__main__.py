"""``python -m src.report DIR [DIR ...]``: tables from the run records under the given directories."""

from __future__ import annotations

import argparse
import shlex
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from src.records import write_text_atomic
from src.report.load import load_runs
from src.report.tables import pivot_table, summarize


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index as first column)."""
    header = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for index, row in table.iterrows():
        lines.append("| " + " | ".join([str(index)] + [str(v) for v in row]) + " |")
    return "\n".join(lines)


def provenance(runs: pd.DataFrame, command: str) -> str:
    """Where the numbers came from: the report command, the runs' commits, machines and dates."""

    def values(column: str) -> str:
        found = sorted({str(v) for v in runs[column].dropna()})
        return ", ".join(found) if found else "unknown"

    finished = runs["finished_at"].dropna()
    dates = f"{finished.min()} to {finished.max()}" if len(finished) else "unknown"
    return "\n".join(
        [
            f"- command: `{command}`",
            f"- runs: {len(runs)} completed; overrides per run in runs.csv",
            f"- commit: {values('git_commit')}",
            f"- machine: {values('hostname')} ({values('device')})",
            f"- runs finished: {dates}",
            f"- report written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}",
        ]
    )


def render_summary(study: str, runs: pd.DataFrame, summary: pd.DataFrame, skipped: list, command: str) -> str:
    parts = [f"# Study `{study}`: test error (%)", "", provenance(runs, command), ""]
    for (dataset, model), table in pivot_table(summary).items():
        parts += [
            f"## {dataset} · {model}",
            "",
            "Test error, mean ± std over seeds (n runs):",
            "",
            markdown_table(table),
            "",
        ]
    if skipped:
        parts += ["## Runs not counted", ""] + [f"- `{path}`: {reason}" for path, reason in skipped] + [""]
    return "\n".join(parts)


def write_study(study: str, runs: pd.DataFrame, skipped: list, out: Path, command: str) -> str:
    """Write runs.csv and summary.md for one study; return the markdown."""
    summary = summarize(runs)
    markdown = render_summary(study, runs, summary, skipped, command)
    target = out / study
    write_text_atomic(target / "runs.csv", runs.to_csv(index=False))
    write_text_atomic(target / "summary.md", markdown)
    return markdown


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.report", description=__doc__)
    parser.add_argument("dirs", nargs="+", help="directories searched recursively for result.json")
    parser.add_argument("--out", default="results", help="results root (default: results)")
    parser.add_argument("--study", help="write every run under this study name (default: each run's own study)")
    args = parser.parse_args(argv)
    command = "python -m src.report " + shlex.join(sys.argv[1:] if argv is None else argv)

    runs, skipped = load_runs(args.dirs)
    for path, reason in skipped:
        print(f"not counted: {path}: {reason}", file=sys.stderr)
    if runs.empty:
        print(f"no completed runs under {', '.join(args.dirs)}", file=sys.stderr)
        return 1
    if args.study:
        runs = runs.assign(study=args.study)
    for study, part in runs.groupby("study", sort=True):
        print(write_study(str(study), part.reset_index(drop=True), skipped, Path(args.out), command))
        print(f"wrote {Path(args.out) / str(study)}/runs.csv and summary.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
