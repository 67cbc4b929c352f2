"""``python -m src.report --plan conf/experiment/<study>.yaml --pilot DIR``: the seeds per cell each claim
of a study needs, from a pilot's variance, before the study is run.

**σ.** The pilot's runs (``--pilot``: run directories or a results folder holding ``runs.jsonl``; optionally
filtered by ``--where key=value``) are grouped into cells: the runs that agree on dataset, model, norm,
batch, epochs and every config key the pilot varied, seed aside. σ is the pooled within-cell SD of the
metric (the claim's, default ``test_error``; ``--metric`` for all), ``s² = Σ_i Σ_j (y_ij − ȳ_i)² / (N − k)``
(:class:`src.report.stats.CellModel`); the largest single-cell SD is planned with too, as a conservative
column. ``--sd S`` gives σ directly instead.

**Tests.** Each claim's tests are built by its kind (:mod:`src.report.kinds`) on the study's design (a
test is ``direction``/``at_least``/``at_most``/``within`` of θ = Σ wᵢ·m(cellᵢ) against a bound; factor
``f = Σ wᵢ²``, each claim cell one design cell). The assumed true θ, in the test's orientation:

- ``within δ`` (equivalence, TOST): θ = 0; and, where the pilot has the claim's cells, the pilot's θ̂;
- ``direction`` (θ > 0): the claim's margin (``margin``, or ``at_least`` > 0, or −``at_most`` > 0), else
  the smallest effect of interest ``--effect`` (default 1 point);
- size ``at_least T`` / ``at_most T``: θ = T + ``--effect`` / T − ``--effect`` (``|θ − T|`` = the effect).

**Power.** At n seeds in each of the k cells of the design (the product of the study's
``hydra.sweeper.params`` other than ``seed``; without any, the cells its claims name) the contrast has
``se = σ·√(f/n)`` on ``df = k(n − 1)``: a one-sided test has noncentral-t power
(:func:`src.report.stats.power_one_sided`), a TOST the power of both tests rejecting
(:func:`src.report.stats.power_tost`); the seeds are the least n with power ≥ ``report.power`` (default
0.8; :func:`src.report.stats.seeds_needed`). The report judges each one-sided test at α/2 and the study's
m claims with Holm's correction across them; the plan takes α/2/m, the Bonferroni bound of Holm's first
(strictest) step, so it is conservative. A claim needs the most seeds of its verdict tests (its size
tests, else its direction test); a direction test beside size tests is shown, not counted. Runs the study
launches separately (a half-length gate arm) add df, which the plan leaves out: conservative again.
"""

from __future__ import annotations

import argparse
import itertools
import math
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from src.report.cells import Cell, Test, as_text
from src.report.claims import DESIGN, claims_of
from src.report.config_columns import varying_config, with_config_columns
from src.report.kinds import find_kind
from src.report.load import load_run_set
from src.report.spec import check_claim, check_spec
from src.report.spec_checks import SpecError
from src.report.stats import ALPHA, MAX_SEEDS, POWER, CellModel, power_one_sided, power_tost, seeds_needed
from src.run import study_file
from src.run.atomic import write_text_atomic

EFFECT = 1.0  # points of error: the smallest effect a user would act on


class PlanError(ValueError):
    """A problem the user can act on; the message is one line naming the flag and its value."""


@dataclass
class Pilot:
    """σ: the pilot's cell model per metric (``models``), or ``sd`` given with ``--sd``."""

    source: str
    models: dict[str, CellModel] = field(default_factory=dict)
    sd: float = math.nan

    def pooled(self, metric: str) -> float:
        return self.models[metric].sd if self.models else self.sd

    def largest(self, metric: str) -> tuple[float, str]:
        """The largest single-cell SD, and its cell (shown by the columns that tell the cells apart)."""
        if not self.models:
            return self.sd, "--sd"
        values = self.models[metric].values
        sds = {c: float(np.std(v, ddof=1)) for c, v in values.items() if len(v) > 1}
        cell = max(sds, key=sds.__getitem__)
        varying = {k for k, v in cell.values if not k.startswith("norm.") and any(c.get(k) != v for c in values)}
        return sds[cell], str(Cell.of({k: v for k, v in cell.values if k in varying}))

    def estimate(self, weights: dict[Cell, float], metric: str) -> float:
        """θ̂ on the pilot, a claim cell being the mean of the pilot cells it matches (as the report's
        :meth:`ClaimEvaluator.design_weights`); NaN when the pilot lacks one."""
        model, expanded = self.models[metric], {}
        for cell, weight in weights.items():
            matching = [d for d in model.values if cell.within(d)]
            if not matching:
                return math.nan
            for design in matching:
                expanded[design] = expanded.get(design, 0.0) + weight / len(matching)
        return model.contrast(expanded).value


@dataclass
class Planned:
    """One test of one claim, planned: seeds per cell at σ, at the largest cell SD, without Holm."""

    claim: str
    test: Test
    theta: float
    why: str
    sd: float
    seeds: int | None
    conservative: int | None
    unadjusted: int | None
    power_launched: float  # at the seeds the study launches
    verdict: bool  # counts for the claim's verdict (else a direction test shown beside)
    pilot: float = math.nan
    at_pilot: int | None = None


def power_of(test: Test, theta: float, sd: float, factor: float, n: int, cells: int, level: float) -> float:
    """Power of ``test`` at a true θ: a TOST for ``within``, else one-sided with shift θ − bound (bound − θ)."""
    if test.test == "within":
        return power_tost(theta, test.bound, sd, factor, n, cells, level)
    shift = test.bound - theta if test.test == "at_most" else theta - test.bound
    return power_one_sided(shift, sd, factor, n, cells, level)


def seeds_at(
    test: Test, theta: float, sd: float, level: float, *, factor: float, cells: int, target: float
) -> int | None:
    """The least seeds per cell at which ``test`` has power ≥ ``target`` (:func:`seeds_needed`)."""
    return seeds_needed(lambda n: power_of(test, theta, sd, factor, n, cells, level), target)


def assumed_theta(test: Test, claim: dict[str, Any], effect: float) -> tuple[float, str]:
    """The true θ a test is planned at, and why (see the module docstring)."""
    if test.test == "within":
        return 0.0, "equivalence"
    if test.test in ("at_least", "at_most"):
        sign = 1 if test.test == "at_least" else -1
        return test.bound + sign * effect, f"bound {'+' if sign > 0 else '−'} --effect"
    at_least, at_most = claim.get("at_least"), claim.get("at_most")
    margins = [claim.get("margin"), at_least if at_least and at_least > 0 else None]
    margin = next((abs(float(m)) for m in [*margins, -at_most if at_most and at_most < 0 else None] if m), None)
    return (margin, "the claim's margin") if margin else (effect, "--effect")


def values_of(value: Any) -> list[str]:
    """A Hydra sweep value as its values: ``"bn,gn"``, ``range(10,18)``, ``choice(a,b)`` or a list."""
    if isinstance(value, list):
        return [str(v) for v in value]
    text = str(value).strip()
    if found := re.fullmatch(r"range\(([^)]*)\)", text):
        return [str(v) for v in range(*(int(float(p)) for p in found.group(1).split(",")))]
    found = re.fullmatch(r"choice\((.*)\)", text)
    return [v.strip() for v in (found.group(1) if found else text).split(",") if v.strip()]


def compose_study(path: Path) -> dict[str, Any]:
    """The study file over the studies it names in ``defaults``, as Hydra composes it (the one reader,
    :func:`src.run.study_file.compose_study`); read for its sweep."""
    return study_file.compose_study(path) or {}


def design_of(study: dict[str, Any]) -> tuple[pd.DataFrame, list[int]]:
    """One row per cell of the study's sweep (its params but seed; the study's batch and epochs when they
    are not swept), and the seeds it launches; no rows when nothing but the seed is swept."""
    params = dict(((study.get("hydra") or {}).get("sweeper") or {}).get("params") or {})
    seeds = [int(s) for s in values_of(params.pop("seed", ""))]
    factors = {key: values_of(value) for key, value in params.items()}
    design = pd.DataFrame(list(itertools.product(*factors.values())) if factors else [], columns=list(factors))
    for key in ("batch", "epochs"):
        if key not in design and isinstance(study.get(key), int):
            design[key] = study[key]
    return design.assign(**{k: design[k].astype(int) for k in ("batch", "epochs") if k in design}), seeds


def read_pilot(directories: list[str], where: list[str], metrics: set[str]) -> Pilot:
    """The pilot's cell model of each metric, its runs kept by ``where`` (see the module docstring)."""
    named = " ".join(directories)
    for directory in directories:
        if not Path(directory).exists():
            raise PlanError(f"--pilot {directory}: no such directory")
    run_set = load_run_set(directories)
    runs, counted = run_set.runs, [r for part in run_set.records.values() for r in part if r.completed]
    for item in where:
        key, _, wanted = item.partition("=")
        runs = with_config_columns(runs, counted, [key])
        if not wanted or key not in runs:
            raise PlanError(f"--where {item}: no pilot run records {key!r} (give KEY=VALUE)")
        allowed = {v.strip().lower() for v in wanted.split(",")}
        runs = runs[[as_text(v).lower() in allowed for v in runs[key]]]
    factors = [k for k in varying_config(counted) if k in runs and not k.endswith("seed")]
    columns = [c for c in dict.fromkeys([*DESIGN, *factors]) if c in runs]
    pilot = Pilot(named + "".join(f" where {item}" for item in where))
    for metric in sorted(metrics):
        if metric not in runs or runs[metric].isna().all():
            raise PlanError(f"--pilot {named}: no counted run records {metric!r} (after --where)")
        cells: dict[Cell, list[float]] = {}
        for key, part in pd.to_numeric(runs[metric], errors="coerce").groupby([runs[c].map(as_text) for c in columns]):
            cells[Cell.of(dict(zip(columns, key, strict=True)))] = list(part)
        pilot.models[metric] = CellModel(cells)
        if not pilot.models[metric].df > 0:
            raise PlanError(f"--pilot {named}: no cell has two runs of {metric!r}, so no within-cell SD")
    return pilot


@dataclass
class StudyPlan:
    study: str
    alpha: float
    target: float
    claims: int  # m, Holm's correction across the claims
    cells: int
    cells_from: str
    launched: list[int]
    pilot: Pilot
    effect: float
    rows: list[Planned] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def level(self) -> float:
        return self.alpha / 2 / max(self.claims, 1)

    def needed(self, conservative: bool = False) -> dict[str, int | None]:
        """Seeds per cell each claim needs: the most of its verdict tests (None: more than MAX_SEEDS)."""
        found: dict[str, int | None] = {}
        for row in (r for r in self.rows if r.verdict):
            seeds, before = (row.conservative if conservative else row.seeds), found.get(row.claim, 0)
            found[row.claim] = None if seeds is None or before is None else max(before, seeds)
        return found


def plan_study(study: str, composed: dict[str, Any], spec: dict[str, Any], pilot: Pilot, effect: float,
               metric: str | None) -> StudyPlan:  # fmt: skip
    """Every test of every claim of ``spec`` planned on ``pilot``'s σ (see the module docstring)."""
    design, launched = design_of(composed)
    claims = claims_of(spec)
    alpha, target = float(spec.get("alpha", ALPHA)), float(spec.get("power", POWER))
    plan = StudyPlan(study, alpha, target, len(claims), len(design), "", launched, pilot, effect)
    built = []
    for i, claim in enumerate(claims):
        name = str(claim.get("id", f"claim{i + 1}"))
        try:
            check_claim(f"report.claims[{i}]", claim)
            tests = find_kind(claim).build(claim, design)
        except (SpecError, KeyError, ValueError) as error:
            plan.notes.append(f"{name}: not planned: {error}")
            continue
        built.append((claim, name, tests.sizes or [tests.direction], [t for t in [tests.direction, *tests.sizes] if t]))
    swept = [c for c in design if c not in ("batch", "epochs") or design[c].nunique() > 1]
    plan.cells_from = f"{' × '.join(swept)} of the study's hydra.sweeper.params"
    if not plan.cells:
        plan.cells = len({c for *_, tests in built for t in tests for c in t.weights})
        plan.cells_from = "the cells the claims name: the study sweeps nothing but the seed"
    for claim, name, verdict, tests in built:
        used = metric or str(claim.get("metric", "test_error"))
        sd, largest = pilot.pooled(used), pilot.largest(used)[0]
        for test in tests:
            if not any(test.weights.values()):
                plan.notes.append(f"{name}: {test.label}: no cells, not planned")
                continue
            factor, (theta, why) = sum(w**2 for w in test.weights.values()), assumed_theta(test, claim, effect)
            at = partial(seeds_at, test, factor=factor, cells=plan.cells, target=target)
            count = len(launched)
            power = power_of(test, theta, sd, factor, count, plan.cells, plan.level) if count > 1 else math.nan
            verdicts = test in verdict
            row = Planned(name, test, theta, why, sd, at(theta, sd, plan.level), at(theta, largest, plan.level),
                          at(theta, sd, alpha / 2), power, verdicts)  # fmt: skip
            row.pilot = pilot.estimate(test.weights, used) if pilot.models else math.nan
            if math.isfinite(row.pilot):
                row.at_pilot = at(row.pilot, sd, plan.level)
            plan.rows.append(row)
    return plan


def _n(n: int | None) -> str:
    return f"> {MAX_SEEDS}" if n is None else str(n)


def _seeds(first: int, n: int) -> str:
    return ",".join(str(s) for s in range(first, first + n))


def render(plan: StudyPlan, study_path: str) -> str:
    """The plan as markdown: what σ and levels it uses, a row per test, seeds per claim, the command."""
    lines = [f"# Planned power: {plan.study}", "", f"Study file `{study_path}`; σ from `{plan.pilot.source}`.", ""]
    for metric, model in plan.pilot.models.items():
        largest, cell = plan.pilot.largest(metric)
        lines.append(
            f"- σ = {model.sd:.3f} points: the pooled within-cell SD of {metric} over the pilot's {len(model.values)}"
            f" cells ({model.runs} runs, {model.df} df); the largest cell SD, {largest:.3f} ({cell}), gives the"
            " conservative column."
        )
    if not plan.pilot.models:
        lines.append(f"- σ = {plan.pilot.sd:g} points (--sd): the conservative column is the same.")
    launched = len(plan.launched)
    lines += [
        f"- Power {plan.target:g} (report.power). Each one-sided test at α/2/m = {plan.level:.4g}: α/2 as the"
        f" report judges (α = {plan.alpha:g}, report.alpha), over the m = {plan.claims} claims for Holm's correction"
        " across them (the Bonferroni bound of its first step: conservative); 'α/2 only' leaves Holm out.",
        f"- Assumed true θ: 0 for an equivalence; for a direction test the claim's margin, else --effect ="
        f" {plan.effect:g} point (the smallest effect of interest); for a size test at_least/at_most T, T ± --effect.",
        f"- Model: {plan.cells} cells ({plan.cells_from}), df = {plan.cells}·(n − 1), each claim cell one of them;"
        " runs launched separately (a gate arm) add df, left out here.",
        "",
        "| claim | test | claim says | assumed θ | σ | seeds/cell | at largest cell SD | α/2 only"
        f" | power at {launched} seeds | pilot θ̂ | seeds at pilot θ̂ |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in plan.rows:
        pilot = (f"{r.pilot:+.2f}", _n(r.at_pilot)) if math.isfinite(r.pilot) else ("–", "–")
        power = f"{r.power_launched:.2f}" if math.isfinite(r.power_launched) else "–"
        lines.append(
            f"| {r.claim} | {r.test.label}{'' if r.verdict else ' (beside)'} | {r.test.claim} | {r.theta:+.2f}"
            f" ({r.why}) | {r.sd:.3f} | {_n(r.seeds)} | {_n(r.conservative)} | {_n(r.unadjusted)} | {power}"
            f" | {' | '.join(pilot)} |"
        )
    needed, conservative = plan.needed(), plan.needed(conservative=True)
    lines += ["", "Seeds per cell each claim needs (the most of its verdict tests):", ""]
    for claim, n in needed.items():
        enough = "enough" if n is not None and n <= launched else "NOT enough"
        tail = f": the study's {launched} seeds are {enough} at the assumed θ" if launched else ""
        lines.append(f"- {claim}: {_n(n)} (at the largest cell SD: {_n(conservative[claim])}){tail}")
    if finite := [n for n in needed.values() if n is not None]:
        n, most, first = max(finite), max(c or 0 for c in conservative.values()), min(plan.launched, default=0)
        over = sum(n is None for n in needed.values())
        lines += [
            "",
            f"Total: {n} seeds × {plan.cells} cells = {n * plan.cells} runs (at the largest cell SD: {most} ×"
            f" {plan.cells} = {most * plan.cells})" + (f"; {over} claim(s) need more than {MAX_SEEDS}" if over else ""),
            "",
            f"    python -m src.train -m +experiment={plan.study} seed={_seeds(first, n)}",
        ]
        if n > launched > 0:
            lines += ["", f"The study launches {launched} (seeds {first}–{first + launched - 1}): add"
                      f" seed={_seeds(first + launched, n - launched)}."]  # fmt: skip
    if plan.notes:
        lines += ["", *(f"- note: {note}" for note in plan.notes)]
    return "\n".join(lines) + "\n"


def provenance(argv: list[str]) -> str:
    """The command, commit, machine and date a written plan came from."""
    from datetime import datetime, timezone

    from src.run.provenance import git_commit, machine_description

    machine = machine_description()
    command = " ".join(["python -m src.report", *argv])
    return (
        f"\n- command: `{command}`\n- commit: {git_commit()}\n"
        f"- machine: {machine['hostname']} ({machine['processor']}, {machine['cpu_count']} CPUs)\n"
        f"- written: {datetime.now(timezone.utc).isoformat(timespec='seconds')}\n"
    )


def main(argv: list[str], read_spec: Callable[[Path], dict[str, Any] | None]) -> int:
    """``--plan``'s command line; ``read_spec`` reads a study file's ``report`` block (the report's reader)."""
    parser = argparse.ArgumentParser(prog="python -m src.report --plan", description=__doc__.split("\n\n")[0])
    add = parser.add_argument
    add("--plan", required=True, metavar="STUDY_YAML", help="the study file, conf/experiment/<study>.yaml")
    add("--pilot", nargs="+", metavar="DIR", help="the pilot's run directories, or a results folder (runs.jsonl)")
    add("--sd", type=float, help="σ, the within-cell SD in points, instead of a pilot")
    add("--metric", help="the pilot's metric for every claim (default: each claim's, else test_error)")
    add("--where", action="append", default=[], metavar="KEY=VALUE", help="keep pilot runs whose KEY is VALUE[,VALUE]")
    add("--effect", type=float, default=EFFECT, help=f"the smallest effect of interest, points (default {EFFECT:g})")
    add("--out", help="also write the plan as markdown: a .md file, or a folder (<out>/plan_<study>.md)")
    args = parser.parse_args(argv)
    try:
        path = Path(args.plan)
        if not path.is_file():
            raise PlanError(f"--plan {args.plan}: no such study file")
        if bool(args.pilot) == (args.sd is not None):
            raise PlanError("--plan needs one of --pilot DIR [DIR ...] (a pilot's runs) or --sd S (σ in points)")
        if args.sd is not None and not args.sd > 0:
            raise PlanError(f"--sd {args.sd:g}: must be a number > 0")
        spec = read_spec(path) or {}
        check_spec({**spec, "claims": []})  # alpha, power …; each claim is checked as it is planned
        if not claims_of(spec):
            raise PlanError(f"--plan {args.plan}: its report block has no claims")
        metrics = {args.metric or str(c.get("metric", "test_error")) for c in claims_of(spec)}
        pilot = read_pilot(args.pilot, args.where, metrics) if args.pilot else Pilot("--sd", sd=args.sd)
        plan = plan_study(path.stem, compose_study(path), spec, pilot, args.effect, args.metric)
    except (PlanError, SpecError, OSError, yaml.YAMLError) as error:
        print(f"error: {str(error).splitlines()[0]}", file=sys.stderr)
        return 2
    text = render(plan, args.plan)
    print(text, end="")
    if args.out:
        out = Path(args.out) if args.out.endswith(".md") else Path(args.out) / f"plan_{plan.study}.md"
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out, text + provenance(argv))
        print(f"wrote {out}")
    return 0
