"""Checks of what a report is given, made before anything is computed or written.

Each fails with one line naming the flag or key, its value and what is allowed
(:class:`src.report.spec_checks.SpecError`), and the report exits with status 2:

- :func:`check_claims_file`: ``--claims`` must name a readable study file with a ``report`` block (a
  missing file is never a reason to judge other claims instead);
- :func:`read_runs_csv`: ``--from-runs-csv`` must name a runs.csv a report wrote;
- :func:`check_claim_norms`: every norm a claim names must have been run by the study (a typo such as
  ``gm``, or ``frn`` in a study that never ran it, would otherwise read "no data").
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from src.report.claims import claims_of
from src.report.kinds import find_kind
from src.report.kinds.order import parse_order
from src.report.load import IDENTITY, RunSet, Skipped, load_runs_csv
from src.report.spec_checks import SpecError, fail

TEXT_KEYS = {"id", "claim", "text", "note", "published", "kind", "metric", "convergence", "budget"}


def check_claims_file(path: str) -> None:
    """``--claims PATH``: an existing, readable YAML file with a ``report`` mapping."""
    file = Path(path)
    allowed = "give a study file whose report block holds the claims, e.g. conf/experiment/<study>.yaml"
    if not file.is_file():
        fail("--claims", path, f"no such file; {allowed}")
    try:
        data = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        fail("--claims", path, f"cannot be read as YAML ({first}); {allowed}")
    inherits = isinstance(data, dict) and any(isinstance(d, str) and d != "_self_" for d in data.get("defaults") or [])
    if not isinstance(data, dict) or (not isinstance(data.get("report"), dict) and not inherits):
        fail("--claims", path, f"has no report block (report: {{claims: [...]}}); {allowed}")


def read_runs_csv(path: str) -> RunSet:
    """``--from-runs-csv PATH`` read as a RunSet; one line when it is missing or not a report's runs.csv."""
    allowed = "give the runs.csv a report wrote, e.g. results/<study>/runs.csv"
    file = Path(path)
    if not file.is_file():
        fail("--from-runs-csv", path, f"no such file; {allowed}")
    try:
        header = pd.read_csv(file, nrows=0)
    except (OSError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        fail("--from-runs-csv", path, f"cannot be read as CSV ({type(error).__name__}); {allowed}")
    lacking = [c for c in [*IDENTITY, "test_error"] if c not in header.columns]
    if lacking:
        fail("--from-runs-csv", path, f"has no column {', '.join(lacking)}; {allowed}")
    try:
        return load_runs_csv(file)
    except (ValueError, TypeError, pd.errors.ParserError) as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        fail("--from-runs-csv", path, f"not a report's runs.csv ({first}); {allowed}")
    raise AssertionError("unreachable")


def norms_run(runs: pd.DataFrame, skipped: list[Skipped]) -> set[str]:
    """The norms the study ran: those of its counted runs and of its runs that did not finish (a norm that
    diverged everywhere was run; its claims read "no data" with the reason)."""
    present = {str(n) for n in runs["norm"].dropna()} if "norm" in runs else set()
    return present | {s.cell.split("@")[0] for s in skipped if s.cell}


def claim_norms(claim: dict[str, Any], runs: pd.DataFrame) -> list[str]:
    """The norms a claim names: in its norm keys (``norm``, ``norms``, ``others``, ``order``, the ``norm``
    of its ``a``/``b``/``cells``/``where`` cells) and in the cells of the tests its kind builds."""
    named: list[str] = []

    def add(value: Any) -> None:
        if isinstance(value, str) and value not in named:
            named.append(value)

    add(claim.get("norm"))
    for key in ("norms", "others"):
        values = claim.get(key)
        for value in values if isinstance(values, list) else []:
            add(value)
    if isinstance(claim.get("order"), str):
        for value in parse_order(claim["order"])[0]:
            add(value)
    cells = [claim.get("a"), claim.get("b"), claim.get("where"), *(claim.get("cells") or [])]
    for cell in cells:
        if isinstance(cell, dict):
            add(cell.get("norm"))
    tests = find_kind(claim).build(claim, runs)
    for test in [*tests.sizes, *([tests.direction] if tests.direction else [])]:
        for cell in test.weights:
            add(None if cell.norm is None else str(cell.norm))
    return named


def _mentions(value: Any, norm: str) -> bool:
    if isinstance(value, str):
        return norm in re.findall(r"[\w-]+", value)
    if isinstance(value, dict):
        return any(_mentions(v, norm) for v in value.values())
    if isinstance(value, list):
        return any(_mentions(v, norm) for v in value)
    return False


def check_claim_norms(spec: dict[str, Any] | None, runs: pd.DataFrame, skipped: list[Skipped]) -> None:
    """Fail with one line at the first claim naming a norm the study never ran, e.g.
    ``report.claims[1] (gn_flat).norm = 'gm': no run of this study used norm 'gm'; norms run: bn, gn``."""
    present = norms_run(runs, skipped)
    if not present:
        return
    for index, claim in enumerate(claims_of(spec)):
        for norm in claim_norms(claim, runs):
            if norm in present:
                continue
            key = next((k for k, v in claim.items() if k not in TEXT_KEYS and _mentions(v, norm)), "norm")
            name = f"report.claims[{index}]" + (f" ({claim['id']})" if claim.get("id") else "")
            fail(
                f"{name}.{key}",
                claim.get(key, norm),
                f"no run of this study used norm {norm!r}; norms run: {', '.join(sorted(present))}",
            )


__all__ = ["SpecError", "check_claim_norms", "check_claims_file", "read_runs_csv"]
