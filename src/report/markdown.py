"""The markdown files of a report: summary.md, claims.md and the results/README.md index."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

import pandas as pd

from src.report.claims import (
    NOT_ASSESSABLE,
    UNDECIDED,
    VERDICTS,
    ClaimResult,
    Test,
    format_published,
    metric_name,
)
from src.report.commands import sweep_commands
from src.report.gate import GateRule
from src.report.load import Skipped
from src.report.norm_info import NormCatalog
from src.report.slices import SLICE
from src.report.stats import ALPHA, POWER
from src.report.tables import pivot_table, reference_table, summary_metrics

VERDICT_MARK = {"reproduced": "✅", "not reproduced": "❌", "undecided": "❔", "not assessable": "⏸", "no data": "∅"}


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


def _reused(runs: pd.DataFrame) -> list[str]:
    """A line for the runs copied from other studies' sweeps (``reuse_from``), if any."""
    if "reused_from" not in runs or not runs["reused_from"].notna().any():
        return []
    counts = runs["reused_from"].value_counts()
    named = ", ".join(f"{n} from {study}" for study, n in sorted(counts.items()))
    return [f"- reused: {named} (the same computation, trained for that study; `reused_from` in their records)"]


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
        *_reused(runs),
        f"- runs finished: {dates}",
        f"- report written: {context['written_at']}",
    ]
    if context.get("runs_source"):
        lines.append(f"- runs read from: {context['runs_source']}")
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
    label = SLICE if SLICE in runs else "model"
    for column in ("epochs", "lr"):
        if column not in runs:
            continue
        mixed = runs.groupby(["dataset", label, "norm", "batch"])[column].nunique()
        mixed = mixed[mixed > 1]
        if len(mixed):
            cells = ", ".join(f"{n}@{b}" for (_, _, n, b) in mixed.index[:6])
            notes.append(f"- ⚠ runs pooled in one cell differ in `{column}` ({cells}); see runs.csv")
    return notes


def render_references(spec: dict[str, Any], catalog: NormCatalog | None = None) -> list[str]:
    """The study's published tables (``report.references``), each once, under one heading."""
    parts = []
    for reference in spec.get("references") or []:
        if not isinstance(reference, dict):
            continue
        table = reference_table(reference, catalog)
        source = reference.get("source", "published")
        if reference.get("conditions"):
            source = f"{source} — {reference['conditions']}"
        if table is not None:
            parts += [f"Published: {source}", "", markdown_table(table), ""]
        elif source:
            parts += [f"Published: {source}", ""]
        if reference.get("note"):
            parts += [f"> {str(reference['note']).strip()}", ""]
    return ["## Published numbers", "", *parts] if parts else []


def render_summary(
    study: str,
    runs: pd.DataFrame,
    summary: pd.DataFrame,
    skipped: list[Skipped],
    spec: dict[str, Any],
    claims: list[ClaimResult],
    figures: dict[str, str],
    context: dict[str, Any],
    catalog: NormCatalog | None = None,
) -> str:
    catalog = catalog or NormCatalog.from_runs(runs)
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
    medians = [m for m in summary_metrics(runs) if m.startswith("val_error_median_last")]
    median_tables = {m: pivot_table(summary, m, catalog) for m in medians}
    for (dataset, model), table in pivot_table(summary, catalog=catalog).items():
        parts += [
            f"## {dataset} · {model}",
            "",
            "Test error (%) after the last epoch, mean ± std over seeds (n runs); CIs in summary.csv:",
            "",
            markdown_table(table),
            "",
        ]
        for metric, tables in median_tables.items():
            if (dataset, model) in tables:
                caption = f"{metric_name(metric)}, mean ± std over seeds (n runs):"
                parts += [caption, "", markdown_table(tables[(dataset, model)]), ""]
    parts += render_references(spec, catalog)
    for name, caption in figures.items():
        svg = name.removesuffix(".png") + ".svg"
        parts += [f"![{caption}]({name})", "", f"{caption_note(name)}[SVG]({svg}).", ""]
    if claims:
        counts = Counter(c.verdict for c in claims)
        parts += [
            "## Claims",
            "",
            ", ".join(f"{counts[v]} {v}" for v in VERDICTS if counts[v]) + " — details in [claims.md](claims.md)",
            "",
        ]
        parts += [
            f"- {VERDICT_MARK.get(c.verdict, '')} **{c.verdict_shown}**: {c.text or c.id} ({c.dataset} · {c.model})"
            for c in claims
        ] + [""]
    parts += render_skipped(skipped)
    return "\n".join(parts)


FIGURE_NOTES = {
    "error_vs_batch.png": (
        "Error bars: the 95 % t interval of each cell mean from its own seeds' variance"
        " (`src/report/stats.py` mean_ci, the one-sample interval: for a single cell, the per-cell-variance"
        " model the verdicts use); n = seeds per cell. "
    ),
    "error_by_norm.png": "Bars: cell means with the same 95 % interval; dots: the single runs. ",
    "learning_curves.png": "Mean validation error per epoch over each cell's seeds. ",
}


def caption_note(name: str) -> str:
    """What a figure's marks mean, for the line under it in summary.md."""
    return FIGURE_NOTES.get(name, "")


def render_skipped(skipped: list[Skipped]) -> list[str]:
    if not skipped:
        return []
    return ["## Runs not counted", ""] + [f"- `{s.path}`: {escape(s.reason)}" for s in skipped] + [""]


def _interval(estimate: Any) -> str:
    return estimate.format() if estimate is not None else "–"


def _p(value: float) -> str:
    return f"{value:.3g}" if finite(value) else "–"


def _seeds(test: Test) -> str:
    if test.verdict != UNDECIDED:
        return ""
    return str(test.seeds) if test.seeds else test.seeds_note or "–"


def _what_it_takes(claim: ClaimResult) -> str:
    stability = claim.stability
    if claim.verdict == NOT_ASSESSABLE and stability and stability.blocks:
        if stability.status == "missing arm":
            return f"the {stability.epochs // 2 if stability.epochs else 'E/2'}-epoch arm of the same cells"
        if stability.seeds:
            return f"{stability.seeds} seeds per cell at both lengths"
        return f"a schedule longer than {stability.epochs} epochs, until the contrast settles"
    if claim.verdict != UNDECIDED:
        return ""
    if claim.seeds:
        return f"{claim.seeds} seeds per cell"
    notes = [t.seeds_note for t in claim.tests if t.verdict == UNDECIDED and t.seeds_note]
    return notes[0] if notes else "–"


def _headline(claim: ClaimResult) -> str:
    tests = claim.sizes or ([claim.direction] if claim.direction else [])
    return "; ".join(f"{t.label}: {_interval(t.estimate)}" for t in tests) or "–"


def verdict_rule(alpha: float, power: float) -> str:
    """How the verdicts are reached, with the levels used."""
    return (
        f"Every contrast is estimated from the cell means with each cell's own variance (Welch–Satterthwaite df,"
        f" stated with each test); intervals are {100 * (1 - alpha):g} % t intervals, and the pooled-variance"
        f" cell-means model over the slice is a robustness column. Each one-sided test is at α/2 = {alpha / 2:g},"
        f" so a verdict reads"
        f" off the interval shown. **Direction** (the sign of the effect): reproduced / reversed / undecided."
        f" **Size** (against the claim's threshold): reproduced when the interval is past the threshold, not"
        f" reproduced when it is wholly on the wrong side, undecided otherwise. **Equivalence** (`≲`, `flat`,"
        f" `equivalent`): TOST, two one-sided tests at α = {alpha / 2:g} each — reproduced when the interval"
        f" lies inside ±δ, not reproduced when it lies wholly outside. A claim of several tests is reproduced"
        f" when all are and not reproduced when any is contradicted after Holm's correction across them; then"
        f" every verdict must survive Holm's correction across the study's claims."
        f" **Not assessable**: the claim's contrast at E epochs and at E/2 differ by more than its margin, are"
        f" not measured precisely enough to tell, or the E/2 arm is missing (the contrast-stability gate, below"
        f" each claim); a claim marked `budget: fixed` is about its schedule exactly and says so. For an"
        f" undecided claim, the seeds per cell at which the observed effect and the cells' SDs would decide it"
        f" with {100 * power:g} % power. **No data**: a cell has no completed"
        f" run. Errors in percentage points. Published numbers come from other datasets, models and schedules"
        f" (their conditions are stated beside each): the expected direction and rough size, not a target."
    )


def _claim_detail(number: int, claim: ClaimResult) -> list[str]:
    parts = [f"### {number}. `{claim.id}`: {claim.text}", "", f"Tested: {claim.statement}", ""]
    parts += [
        f"Metric: {metric_name(claim.metric)}. Intervals: each cell's own variance (Welch–Satterthwaite df);"
        f" robustness column: the pooled model over {claim.model_cells} cells, SD {claim.pooled_sd:.3g},"
        f" df = {claim.model_df}.",
        "",
    ]
    rows = []
    for test in claim.tests:
        kind = "direction" if test.test == "direction" else ("equivalence" if test.test == "within" else "size")
        rows.append(
            [
                kind,
                test.label,
                _interval(test.estimate),
                f"{test.estimate.df:.1f}" if finite(test.estimate.df) else "–",
                _interval(test.pooled) if test.pooled else "–",
                test.claim,
                _p(test.p),
                test.verdict,
                test.pooled_verdict or "–",
                _seeds(test),
            ]
        )
    header = [
        "test",
        "contrast",
        "estimate [CI]",
        "df",
        "pooled [CI]",
        "claim",
        "p",
        "verdict",
        "pooled verdict",
        "seeds/cell to decide",
    ]
    parts += [rows_table(header, rows), ""]
    if claim.stability and claim.stability.status != "not applicable":
        parts.append(f"- contrast-stability gate: **{claim.stability.status}**")
        parts += [f"  - {line}" for line in claim.stability.lines]
        if claim.stability.seeds:
            parts.append(f"  - settles with about {claim.stability.seeds} seeds per cell at both lengths")
    if finite(claim.p_study):
        parts.append(f"- p for the claim {claim.p:.3g}; after Holm across the study's claims {claim.p_study:.3g}")
    if claim.gate and claim.gate.status != "not applicable":
        parts.append(f"- level check (a diagnostic, does not gate): {claim.gate.status}")
        parts += [f"  - {line}" for line in claim.gate.lines]
    for item in claim.published:
        parts.append(f"- published: {format_published(item)}")
        if isinstance(item, dict) and item.get("note"):
            parts.append(f"  ({item['note']})")
    if not claim.published:
        parts.append("- published: no number to compare with")
    parts += [f"- note: {note}" for note in claim.notes]
    parts += [f"- **verdict: {claim.verdict_shown}**", ""]
    return parts


def render_claims(
    study: str,
    runs: pd.DataFrame,
    claims: list[ClaimResult],
    skipped: list[Skipped],
    spec: dict[str, Any],
    context: dict[str, Any],
    registration: list[str] | None = None,  # the "Pre-registration" section (src.report.registration)
) -> str:
    parts = _header(f"Study `{study}`: claims", spec, runs, context)
    parts += [verdict_rule(float(spec.get("alpha", ALPHA)), float(spec.get("power", POWER))), ""]
    rule = GateRule.of(spec.get("convergence"))
    parts += [
        "Contrast-stability gate (every claim, src/report/stability.py): the contrast at E epochs minus the same"
        " contrast at E/2, with its interval: passed when |Δ| ≤ the claim's margin and the interval's half-width"
        " ≤ the margin; failed when the interval lies wholly outside ±margin; unsettled otherwise; a missing E/2"
        " arm blocks the verdict.",
        f"Level check per cell (a diagnostic): {rule.describe()}.",
        "",
    ]
    if not claims:
        parts += ["This study states no claims (add `report.claims` to its sweeps/<study>.yaml).", ""]
    groups: dict[tuple[str, str], list[ClaimResult]] = {}
    for claim in claims:
        groups.setdefault((claim.dataset, claim.model), []).append(claim)
    for (dataset, model), group in groups.items():
        parts += [f"## {dataset} · {model}", ""]
        rows = [
            [
                c.text or c.id,
                c.statement,
                _headline(c),
                c.direction.verdict if c.direction else "–",
                f"{VERDICT_MARK.get(c.verdict, '')} {c.verdict_shown}",
                _what_it_takes(c),
                "; ".join(format_published(p) for p in c.published) or "–",
            ]
            for c in group
        ]
        header = ["claim", "tested", "effect [CI] (pooled)", "direction", "verdict", "what it would take", "published"]
        parts += [rows_table(header, rows), ""]
        for number, claim in enumerate(group, 1):
            parts += _claim_detail(number, claim)
    parts += registration or []
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
