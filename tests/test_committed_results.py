"""Every committed study in results/ rebuilds from its runs.jsonl: the report run again on the committed folder
writes the same tables, verdicts and notes, up to the lines that say when, where and by which command the
report itself was written (its figures are not compared: their bytes depend on the matplotlib build)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from src.report.__main__ import main as report_main

from .conftest import ROOT

STUDIES = sorted(
    path.parent.relative_to(ROOT / "results")
    for path in (ROOT / "results").rglob("runs.jsonl")
    if "unfinished" not in path.parts
)
#: claims.md and summary.md lines about the report's own writing, not about the runs (the claims file's line
#: says how it was given, --claims or remembered; meta.json's claims_from, compared, names it)
VOLATILE_LINES = ("- report command:", "- report written:", "- commit:", "- machine:", "- claims and references:")
#: meta.json keys of the same kind; not_counted lists run records outside runs.jsonl, which a rebuild cannot see
VOLATILE_KEYS = ("written_at", "command", "not_counted")


def steady_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith(VOLATILE_LINES)]


def shallow_clone() -> bool:
    answer = subprocess.run(
        ["git", "rev-parse", "--is-shallow-repository"], cwd=ROOT, capture_output=True, text=True, check=False
    )
    return answer.stdout.strip() != "false"  # no git, or no history: pre-registration reads "not checked"


def test_the_committed_studies_are_found():
    assert {"demo", "small_batch_cifar10", "recipe_pilot_stage3"} <= {str(study) for study in STUDIES}


@pytest.mark.parametrize("study", STUDIES, ids=str)
def test_a_committed_study_rebuilds_from_its_runs_jsonl(study: Path, tmp_path: Path):
    if shallow_clone():
        pytest.skip("pre-registration is read from the study file's git history, which this clone lacks")
    committed = ROOT / "results" / study
    meta = json.loads((committed / "meta.json").read_text())
    assert report_main([str(committed), "--out", str(tmp_path)]) == 0
    rebuilt = tmp_path / meta["study"]
    compared = 0
    for path in sorted(rebuilt.iterdir()):
        if path.suffix not in (".csv", ".md", ".json") or path.name in ("not_counted.csv", "runs.jsonl"):
            continue
        mine = committed / path.name
        assert mine.is_file(), f"the rebuild wrote {path.name}, which results/{study} lacks"
        if path.suffix == ".csv":
            assert path.read_bytes() == mine.read_bytes(), f"results/{study}/{path.name} differs from its rebuild"
        elif path.suffix == ".md":
            assert steady_lines(path) == steady_lines(mine), f"results/{study}/{path.name} differs from its rebuild"
        else:
            again = {k: v for k, v in json.loads(path.read_text()).items() if k not in VOLATILE_KEYS}
            assert again == {k: v for k, v in meta.items() if k not in VOLATILE_KEYS}
        compared += 1
    assert compared >= 6  # claims, summary and runs as csv and md, and meta.json
