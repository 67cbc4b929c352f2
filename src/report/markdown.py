"""The markdown files of a report: summary.md, claims.md and the results/README.md index."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pandas as pd

from src.report.claims import VERDICTS, ClaimResult, format_published
from src.report.commands import sweep_commands
from src.report.load import Skipped
from src.report.tables import pivot_table, reference_table

VERDICT_MARK = {"reproduced": "✅", "not reproduced": "❌", "inconclusive": "❔", "no data": "∅"}


def escape(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: pd.DataFrame) -> str:
    """A DataFrame as a GitHub markdown table (index as first column)."""
    header = [table.index.name or ""] + [str(c) for c in table.columns]
    lines = ["| " + " | ".join(escape(h) for h in header) + " |", "|" + "---|" * len(header)]
    for index, row in table.iterrows():
        lines.append("| " + " | ".join([escape(index)] + [escape(v) for v in row]) + " |")
    return "\n".join(lines)


def rows_table(header: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(escape(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _values(runs: pd.DataFrame, column: str) -> str:
    found = sorted({str(v) for v in runs[column].dropna()}) if column in runs else []
    return ", ".join(found) if found else "unknown"


def provenance(runs: pd.DataFrame, context: dict[str, Any]) -> str:
    """Where the numbers came from: the report command, commits, machines and dates."""
    finished = runs["finished_at"].dropna() if "finished_at" in runs else pd.Series(dtype=str)
    dates = f"{finished.min()} to {finished.max()}" if len(finished) else "unknown"
    lines = [f"- runs launched by: `{command}`" for command in sweep_commands(runs)]
    lines += [
        f"- report command: `{context['command']}`",
        f"- runs: {len(runs)} completed (one row each in runs.csv, with its overrides and run directory)",
        f"- commit: runs {_values(runs, 'git_commit')}; report {context['commit']}",
        f"- machine: runs {_values(runs, 'hostname')} ({_values(runs, 'device')}); report {context['machine']}",
        f"- runs finished: {dates}",
        f"- report written: {context['written_at']}",
    ]
    if context.get("spec_source"):
        lines.append(f"- claims and references: {context['spec_source']}")
    return "\n".join(lines)


def _header(title: str, spec: dict[str, Any], runs: pd.DataFrame, context: dict[str, Any]) -> list[str]:
    parts = [f"# {title}", "", provenance(runs, context), ""]
    if spec.get("title"):
        parts += [f"**{spec['title']}**", ""]
    if spec.get("question"):
        parts += [str(spec["question"]).strip(), ""]
    return parts


def _warnings(runs: pd.DataFrame) -> list[str]:
    notes = []
    for column in ("epochs", "lr"):
        if column not in runs:
            continue
        mixed = runs.groupby(["dataset", "model", "norm", "batch"])[column].nunique()
        mixed = mixed[mixed > 1]
        if len(mixed):
            cells = ", ".join(f"{n}@{b}" for (_, _, n, b) in mixed.index[:6])
            notes.append(f"- ⚠ runs pooled in one cell differ in `{column}` ({cells}); see runs.csv")
    return notes


def render_references(spec: dict[str, Any]) -> list[str]:
    parts = []
    for reference in spec.get("references") or []:
        if not isinstance(reference, dict):
            continue
        table = reference_table(reference)
        source = reference.get("source", "published")
        if table is not None:
            parts += [f"Published: {source}", "", markdown_table(table), ""]
        elif source:
            parts += [f"Published: {source}", ""]
        if reference.get("note"):
            parts += [f"> {str(reference['note']).strip()}", ""]
    return parts


def render_summary(
    study: str,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    skipped: list[Skipped],
    spec: dict[str, Any],
    claims: list[ClaimResult],
    figures: dict[str, str],
    context: dict[str, Any],
) -> str:
    parts = _header(f"Study `{study}`: test error (%)", spec, runs, context)
    warnings = _warnings(runs)
    diverged = Counter(s.cell or "?" for s in skipped if s.status == "diverged")
    if diverged:
        cells = ", ".join(f"{cell} ×{count}" for cell, count in sorted(diverged.items()))
        warnings.append(
            f"- ⚠ {sum(diverged.values())} diverged run(s) are not in the tables ({cells}):"
            " a norm that diverges at a batch size fails there, which the means below do not show"
        )
    parts += warnings + ([""] if warnings else [])
    for (dataset, model), table in pivot_table(summary).items():
        parts += [
            f"## {dataset} · {model}",
            "",
            "Test error (%), mean ± std over seeds (n runs); CIs in summary.csv:",
            "",
            markdown_table(table),
            "",
        ]
        parts += render_references(spec)
    for name, caption in figures.items():
        parts += [f"![{caption}]({name})", ""]
    if claims:
        counts = Counter(c.verdict for c in claims)
        parts += [
            "## Claims",
            "",
            ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v]) + " — details in [claims.md](claims.md)",
            "",
        ]
        parts += [
            f"- {VERDICT_MARK.get(c.verdict, '')} **{c.verdict}**: {c.text or c.id} ({c.dataset} · {c.model})"
            for c in claims
        ] + [""]
    parts += render_skipped(skipped)
    return "\n".join(parts)


def render_skipped(skipped: list[Skipped]) -> list[str]:
    if not skipped:
        return []
    return ["## Runs not counted", ""] + [f"- `{s.path}`: {escape(s.reason)}" for s in skipped] + [""]


def _estimate(claim: ClaimResult) -> str:
    if claim.estimate is not None:
        return claim.estimate.format()
    if claim.comparisons:  # an order: each adjacent pair
        return "; ".join(
            f"{c.label.replace(f'{claim.metric}(', '').replace(')', '')}: {c.estimate.format()}"
            for c in claim.comparisons
        )
    return "–"


VERDICT_RULE = (
    "Verdicts use 95 % t confidence intervals over seeds (Welch's interval for a difference of two cells):"
    " **reproduced** when the whole interval satisfies the claim, **not reproduced** when the whole interval"
    " contradicts it, **inconclusive** when it straddles the threshold or is undefined (a cell with a"
    " single run: one seed never decides a claim), **no data** when a cell has no completed run. Claims made"
    " of several comparisons need all of them. Errors in percentage points; published numbers are from"
    " other datasets/models/schedules, so they give the expected direction and rough size, not a target."
)


def render_claims(
    study: str,
    runs: pd.DataFrame,
    claims: list[ClaimResult],
    skipped: list[Skipped],
    spec: dict[str, Any],
    context: dict[str, Any],
) -> str:
    parts = _header(f"Study `{study}`: claims", spec, runs, context)
    parts += [VERDICT_RULE, ""]
    if not claims:
        parts += ["This study states no claims (add `report.claims` to its sweeps/<study>.yaml).", ""]
    groups: dict[tuple[str, str], list[ClaimResult]] = {}
    for claim in claims:
        groups.setdefault((claim.dataset, claim.model), []).append(claim)
    for (dataset, model), group in groups.items():
        parts += [f"## {dataset} · {model}", ""]
        parts += [
            rows_table(
                ["claim", "tested", "measured effect [95 % CI]", "published", "verdict"],
                [
                    [
                        c.text or c.id,
                        c.statement,
                        _estimate(c),
                        "; ".join(format_published(p, signed=c.kind != "flat") for p in c.published) or "–",
                        f"{VERDICT_MARK.get(c.verdict, '')} {c.verdict}",
                    ]
                    for c in group
                ],
            ),
            "",
        ]
        for number, claim in enumerate(group, 1):
            parts += [f"### {number}. `{claim.id}`: {claim.text}", "", f"Tested: {claim.statement}", ""]
            if claim.effect and claim.estimate is not None:
                parts += [f"Effect: {claim.effect} = {_estimate(claim)}", ""]
            elif claim.effect:
                parts += [f"Effect: {claim.effect}, below", ""]
            if claim.comparisons:
                parts += [
                    rows_table(
                        ["comparison", "estimate [95 % CI]", "n", "claim", "verdict"],
                        [
                            [
                                c.label,
                                c.estimate.format(),
                                "/".join(str(n) for n in c.estimate.n),
                                c.bound,
                                c.verdict,
                            ]
                            for c in claim.comparisons
                        ],
                    ),
                    "",
                ]
            for item in claim.published:
                parts.append(f"- published: {format_published(item, signed=claim.kind != 'flat')}")
                if isinstance(item, dict) and item.get("note"):
                    parts.append(f"  ({item['note']})")
            if not claim.published:
                parts.append("- published: no number to compare with")
            parts += [f"- note: {note}" for note in claim.notes]
            parts += [f"- **verdict: {claim.verdict}**", ""]
    parts += render_skipped(skipped)
    return "\n".join(parts)


def render_index(studies: list[dict[str, Any]], written_at: str) -> str:
    """results/README.md: one line per study found under results/."""
    parts = [
        "# Results",
        "",
        "Written by `python -m src.report` (`make report STUDY=<study>`) from the run records of each study;"
        " regenerated whenever a report is written. Each study directory has summary.md (tables),"
        " claims.md (verdicts), runs.csv, summary.csv and plots.",
        "",
        f"- index written: {written_at}",
        "",
    ]
    rows = []
    for meta in studies:
        name = meta["study"]
        verdicts = meta.get("verdicts") or {}
        verdict_text = ", ".join(f"{verdicts[v]} {v}" for v in VERDICTS if verdicts.get(v)) or "–"
        runs = meta.get("runs")
        rows.append(
            [
                f"[{name}]({name}/summary.md)",
                meta.get("title") or "",
                "–" if runs is None else str(runs),
                ", ".join(meta.get("slices") or []) or "–",
                f"[{verdict_text}]({name}/claims.md)" if meta.get("verdicts") is not None else verdict_text,
                meta.get("written_at") or "–",
            ]
        )
    parts += [rows_table(["study", "question", "runs", "dataset · model", "claims", "reported"], rows), ""]
    return "\n".join(parts)


def finite(value: Any) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
