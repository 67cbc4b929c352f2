"""Pre-registration (src/report/registration.py): a claim, margin or waiver changed after a study's first run is
flagged, from the study file's git history (a throwaway repository with explicit commit dates) against the
runs' ``started_at``."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

import src.report.registration as registration
from src.report.registration import CHANGED, NOT_CHECKED, REGISTERED, check_registration

from .test_report import grid, write_records

STUDY = "conf/experiment/reg.yaml"
BN = {"id": "bn_small", "claim": "BN degrades", "kind": "difference", "norm": "bn", "batches": [2, 32], "at_least": 1}
GN = {"id": "gn_flat", "claim": "GN stays flat", "kind": "flat", "norm": "gn", "batches": [2, 32], "within": 0.5}
RUNS = ["2026-11-20T10:00:00+00:00", "2026-11-20T12:30:00+00:00", None]  # the first run: 2026-11-20T10:00


@pytest.fixture(autouse=True)
def _isolated_git(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No user or system git configuration, and no repository above tmp_path."""
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", os.devnull)
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))


def git(repo: Path, *args: str, date: str = "2026-11-19T09:00:00+00:00") -> str:
    env = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    command = ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", "-c", "commit.gpgsign=false"]
    return subprocess.run([*command, *args], cwd=repo, env=env, check=True, capture_output=True, text=True).stdout


def commit(repo: Path, date: str, claims: list[dict[str, Any]], path: str = STUDY, **report: Any) -> str:
    """Writes the study file with ``claims`` (and report-level keys) and commits it at ``date``; its short hash."""
    if not (repo / ".git").exists():
        repo.mkdir(parents=True, exist_ok=True)
        git(repo, "init", "-q")
    target = repo / path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(yaml.safe_dump({"study": "reg", "report": {"title": "t", **report, "claims": claims}}))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", f"study at {date}", date=date)
    return git(repo, "rev-parse", "--short=7", "HEAD").strip()


def statuses(repo: Path, path: str = STUDY, runs: list[Any] = RUNS) -> dict[str, str]:
    return check_registration(repo / path, runs).statuses


def test_claims_committed_before_the_first_run_are_registered_text_and_published_numbers_aside(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN], where={"epochs": 16})
    reworded = {**GN, "claim": "GN's error is flat", "published": [{"value": 0.0}], "note": "context"}
    commit(repo, "2026-11-21T09:00:00+00:00", [BN, reworded], where={"epochs": 16})
    assert statuses(repo) == {"bn_small": REGISTERED, "gn_flat": REGISTERED}
    lines = check_registration(repo / STUDY, RUNS).markdown(["bn_small", "gn_flat"])
    assert lines[0] == "## Pre-registration"
    assert "- `gn_flat`: registered before the first run" in lines
    assert any("(started 2026-11-20T10:00Z)" in line for line in lines)


def test_a_margin_changed_after_the_first_run_is_flagged_with_its_commit_and_date(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN])
    later = commit(repo, "2026-11-21T09:00:00+00:00", [BN, {**GN, "within": 1.0}])
    found = statuses(repo)
    assert found["bn_small"] == REGISTERED
    assert found["gn_flat"] == f"{CHANGED}: {later} (2026-11-21T09:00Z): within: 0.5 → 1.0"
    assert "⚠ changed after the first run" in "\n".join(check_registration(repo / STUDY, RUNS).markdown())


def test_a_commit_between_runs_counts_from_the_first_run(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN])
    between = commit(repo, "2026-11-20T11:00:00+00:00", [{**BN, "at_least": 2}, GN])  # after the first, before the last
    assert statuses(repo)["bn_small"] == f"{CHANGED}: {between} (2026-11-20T11:00Z): at_least: 1 → 2"
    assert statuses(repo, runs=["2026-11-20T11:30:00Z"])["bn_small"] == REGISTERED  # runs after it: in force


def test_a_waiver_added_after_the_first_run_is_flagged(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN])
    waived = {**GN, "convergence": {"waived": "a claim about training itself"}}
    later = commit(repo, "2026-11-22T08:00:00+00:00", [BN, waived])
    assert statuses(repo)["gn_flat"] == f"{CHANGED}: {later} (2026-11-22T08:00Z): waiver added"


def test_claims_added_or_removed_after_the_first_run_are_flagged(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN])
    later = commit(repo, "2026-11-21T09:00:00+00:00", [GN, {**BN, "id": "bn_small_2", "at_least": 0.5}])
    found = statuses(repo)
    assert found["bn_small_2"] == (
        f"{CHANGED}: claim added after the first run at 2026-11-20T10:00Z, in {later} (2026-11-21T09:00Z)"
    )
    assert found["bn_small"] == f"{CHANGED}: claim removed in {later} (2026-11-21T09:00Z)"
    assert found["gn_flat"] == REGISTERED


def test_report_level_where_and_uncommitted_edits_change_every_claim(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN], where={"epochs": 16}, alpha=0.05)
    later = commit(repo, "2026-11-21T09:00:00+00:00", [BN, GN], where={"epochs": 8}, alpha=0.05)
    data = yaml.safe_load((repo / STUDY).read_text())
    data["report"]["alpha"] = 0.1
    (repo / STUDY).write_text(yaml.safe_dump(data))
    expected = (
        f"{CHANGED}: {later} (2026-11-21T09:00Z): where.epochs: 16 → 8"
        " · the working tree (uncommitted): report.alpha: 0.05 → 0.1"
    )
    assert statuses(repo) == {"bn_small": expected, "gn_flat": expected}


def test_claims_written_after_the_runs_began_are_flagged(tmp_path):
    repo = tmp_path / "repo"
    first = commit(repo, "2026-11-20T18:00:00+00:00", [BN])
    result = check_registration(repo / STUDY, RUNS)
    assert result.statuses["bn_small"] == (
        f"{CHANGED}: claim written after the runs began (first run 2026-11-20T10:00Z; first in {first}"
        " (2026-11-20T18:00Z))"
    )
    assert "first committed after it" in result.notes[0]


def test_a_renamed_study_file_is_followed_and_the_rename_named(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN], path="sweeps/reg.yaml")
    (repo / "conf/experiment").mkdir(parents=True)
    git(repo, "mv", "sweeps/reg.yaml", STUDY)
    git(repo, "commit", "-q", "-m", "move", date="2026-11-21T09:00:00+00:00")
    later = commit(repo, "2026-11-22T09:00:00+00:00", [BN, {**GN, "within": 1.0}])
    result = check_registration(repo / STUDY, RUNS)
    assert result.statuses == {
        "bn_small": REGISTERED,
        "gn_flat": f"{CHANGED}: {later} (2026-11-22T09:00Z): within: 0.5 → 1.0",
    }
    assert any("`sweeps/reg.yaml` → `conf/experiment/reg.yaml`" in note for note in result.notes)


def test_a_change_in_the_study_it_extends_is_flagged(tmp_path):
    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN], path="conf/experiment/base.yaml", alpha=0.05)
    (repo / STUDY).write_text(yaml.safe_dump({"defaults": ["base", "_self_"], "study": "reg"}))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "extends base", date="2026-11-19T10:00:00+00:00")
    later = commit(repo, "2026-11-21T09:00:00+00:00", [BN, GN], path="conf/experiment/base.yaml", alpha=0.1)
    expected = f"{CHANGED}: {later} (2026-11-21T09:00Z): report.alpha: 0.05 → 0.1"
    assert statuses(repo) == {"bn_small": expected, "gn_flat": expected}


def test_without_git_history_every_claim_is_not_checked(tmp_path, monkeypatch):
    plain = tmp_path / "plain" / STUDY  # not a repository
    plain.parent.mkdir(parents=True)
    plain.write_text(yaml.safe_dump({"report": {"claims": [BN]}}))
    result = check_registration(plain, RUNS)
    assert result.statuses == {}
    assert result.status("bn_small").startswith(f"{NOT_CHECKED}: no git history")
    assert "\n" not in result.status("bn_small")
    assert result.markdown(["bn_small"])[-2].startswith("- `bn_small`: not checked: no git history")

    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN])
    monkeypatch.setattr(registration, "GIT", "git-that-is-not-installed")
    assert check_registration(repo / STUDY, RUNS).status("bn_small").startswith(f"{NOT_CHECKED}: no git history")
    monkeypatch.undo()
    assert check_registration(repo / STUDY, [None, "not a time"]).status("bn_small") == (
        f"{NOT_CHECKED}: the runs carry no started_at"
    )
    (repo / "conf/experiment/new.yaml").write_text(yaml.safe_dump({"report": {"claims": [BN]}}))
    assert "was never committed" in check_registration(repo / "conf/experiment/new.yaml", RUNS).status("bn_small")
    assert "no study file" in check_registration(repo / "missing.yaml", RUNS).status("bn_small")


def test_claims_md_and_claims_csv_carry_the_registration(tmp_path):
    from src.report.__main__ import main as report_main

    repo = tmp_path / "repo"
    commit(repo, "2026-11-19T09:00:00+00:00", [BN, GN])
    later = commit(repo, "2026-11-21T09:00:00+00:00", [BN, {**GN, "within": 1.0}])
    cells = {("bn", 2): [30.0, 31.0], ("bn", 32): [20.0, 20.5], ("gn", 2): [22.0, 22.4], ("gn", 32): [21.9, 22.3]}
    records = grid("reg", cells)
    for record in records:
        record["started_at"] = "2026-11-20T10:00:00+00:00"
    runs = write_records(tmp_path / "runs", records)
    assert report_main([str(runs), "--out", str(tmp_path / "out"), "--claims", str(repo / STUDY)]) == 0
    text = (tmp_path / "out" / "reg" / "claims.md").read_text()
    assert "## Pre-registration" in text
    assert f"- `gn_flat`: ⚠ {CHANGED}: {later} (2026-11-21T09:00Z): within: 0.5 → 1.0" in text
    table = pd.read_csv(tmp_path / "out" / "reg" / "claims.csv")
    assert dict(zip(table["id"], table["registration"], strict=True))["bn_small"] == REGISTERED


def test_a_claim_counts_from_the_first_run_it_is_judged_on(tmp_path):
    """An arm copied from an earlier study (started before this study file) does not make a claim judged
    on later runs read as written after its runs; a claim judged on that arm does read so."""
    repo = tmp_path / "repo"
    first = commit(repo, "2026-11-20T18:00:00+00:00", [BN, GN])
    early, late = "2026-11-20T10:00:00+00:00", "2026-11-21T10:00:00+00:00"
    result = check_registration(repo / STUDY, [early, late], {"bn_small": [late], "gn_flat": [early, late]})
    assert result.statuses["bn_small"] == REGISTERED
    assert result.statuses["gn_flat"].startswith(f"{CHANGED}: claim written after the runs began")
    assert f"- `bn_small` counts from the first run it is judged on (started 2026-11-21T10:00Z): {first} (" in (
        "\n".join(result.notes)
    )


def test_a_fixed_budget_claim_is_not_judged_on_the_half_length_arm_it_only_shows(tmp_path):
    from src.report.claims import evaluate_claims

    from .test_claims import LESS, gap, runs_of, schedules

    records = schedules(gap(3.0, 2.9))
    for record in records:  # the 8-epoch arm was copied from a study run before this one was written
        record["started_at"] = "2026-11-20T10:00:00+00:00" if record["epochs"] == 8 else "2026-11-21T10:00:00+00:00"
    runs = runs_of(records, tmp_path / "runs")
    fixed, gated = {**LESS, "id": "fixed", "budget": "fixed"}, {**LESS, "id": "gated"}
    results = evaluate_claims(runs, {"claims": [fixed, gated]})
    assert [len(r.started_at) for r in results] == [16, 32]
    repo = tmp_path / "repo"
    commit(repo, "2026-11-20T18:00:00+00:00", [fixed, gated])
    found = check_registration(repo / STUDY, runs["started_at"], {r.id: r.started_at for r in results}).statuses
    assert found["fixed"] == REGISTERED and found["gated"].startswith(f"{CHANGED}: claim written after the runs")
