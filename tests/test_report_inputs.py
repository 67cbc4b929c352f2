"""What the report is given is never silently replaced: a missing --claims file, a claim naming a norm the
study never ran and a missing --from-runs-csv each end in one line naming the flag or key, the value and
what is allowed, with exit status 2 and nothing written."""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd
import pytest
import yaml

from src.report.__main__ import main as report_main

from .test_report import grid, make_record, write_records

ERRORS = {("bn", 2): [30.0, 31.0, 30.5], ("bn", 32): [20.0, 20.5, 21.0], ("gn", 2): [22.0, 22.4, 22.1]}
ERRORS[("gn", 32)] = [21.0, 21.3, 20.8]


def one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    """The report's stderr: exactly one line, an ``error:`` line."""
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def report(args: list[str]) -> int:
    """The report, with any warning an error (a fallback would warn)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return report_main(args)


def study(tmp_path: Path, claims: list[dict] | None = None) -> Path:
    spec = {"budget": "fixed", "claims": claims or []}
    return write_records(tmp_path / "m", grid("inputs", ERRORS, report=spec))


def test_a_claims_file_that_does_not_exist_fails_with_one_line(tmp_path, capsys):
    runs, out = study(tmp_path), tmp_path / "out"
    assert report([str(runs), "--out", str(out), "--claims", "nothere.yaml"]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: --claims = 'nothere.yaml': no such file; give a study file") and not out.exists()


def test_a_claims_file_without_a_report_block_fails_with_one_line(tmp_path, capsys):
    runs, out = study(tmp_path), tmp_path / "out"
    empty = tmp_path / "empty.yaml"
    empty.write_text(yaml.safe_dump({"epochs": 3}))
    assert report([str(runs), "--out", str(out), "--claims", str(empty)]) == 2
    assert "has no report block" in one_error_line(capsys) and not out.exists()
    broken = tmp_path / "broken.yaml"
    broken.write_text("report: [unclosed\n")
    assert report([str(runs), "--out", str(out), "--claims", str(broken)]) == 2
    assert f"--claims = '{broken}': cannot be read as YAML" in one_error_line(capsys) and not out.exists()


@pytest.mark.parametrize("norm", ["frn", "gm"])  # a norm the study never ran; a typo of gn
def test_a_claim_naming_a_norm_the_study_never_ran_fails_with_one_line(tmp_path, capsys, norm):
    claims = [
        {"id": "bn_small_batch", "kind": "difference", "norm": "bn", "batches": [2, 32], "at_least": 2.0},
        {"id": "flat", "kind": "flat", "norm": norm, "at_most": 1.0},
    ]
    runs, out = study(tmp_path, claims), tmp_path / "out"
    assert report([str(runs), "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert f"report.claims[1] (flat).norm = '{norm}': no run of this study used norm '{norm}'" in line
    assert line.endswith("norms run: bn, gn") and not out.exists()


def test_a_norm_named_inside_an_order_or_a_cell_is_checked_too(tmp_path, capsys):
    claims = [{"id": "order", "kind": "order", "batch": 32, "order": "bn < gm"}]
    assert report([str(study(tmp_path, claims)), "--out", str(tmp_path / "out")]) == 2
    assert "report.claims[0] (order).order = 'bn < gm': no run of this study used norm 'gm'" in one_error_line(capsys)
    cells = [{"id": "ab", "kind": "less", "a": {"norm": "gn", "batch": 2}, "b": {"norm": "ln", "batch": 2}}]
    assert report([str(study(tmp_path / "two", cells)), "--out", str(tmp_path / "out")]) == 2
    assert "(ab).b = {'norm': 'ln', 'batch': 2}: no run of this study used norm 'ln'" in one_error_line(capsys)


def test_a_norm_that_ran_but_lacks_the_claims_cells_still_reads_no_data(tmp_path, capsys):
    """A batch the study did not run, or a norm whose every run diverged, is "no data" with its reason."""
    claims = [
        {"id": "bn_8", "kind": "difference", "norm": "bn", "batches": [8, 32], "at_least": 2.0},
        {"id": "ln_worse", "kind": "greater", "norms": ["ln", "gn"], "batch": 2},
    ]
    records = grid("inputs", ERRORS, report={"budget": "fixed", "claims": claims})
    records.append(make_record("inputs", "ln", 2, 0, 0.0, status="diverged", error="loss is nan"))
    write_records(tmp_path / "m", records)
    assert report_main([str(tmp_path / "m"), "--out", str(tmp_path / "out")]) == 0
    verdicts = pd.read_csv(tmp_path / "out" / "inputs" / "claims.csv").verdict.tolist()
    assert verdicts == ["no data", "no data"]


def test_a_runs_csv_that_does_not_exist_fails_with_one_line(tmp_path, capsys):
    out = tmp_path / "out"
    assert report(["--from-runs-csv", "missing.csv", "--out", str(out)]) == 2
    line = one_error_line(capsys)
    assert line.startswith("error: --from-runs-csv = 'missing.csv': no such file; give the runs.csv a report wrote")
    assert not out.exists()
    bad = tmp_path / "runs.csv"
    bad.write_text("norm,batch\nbn,2\n")
    assert report(["--from-runs-csv", str(bad), "--out", str(out)]) == 2
    assert "has no column study, dataset, model, seed, epochs, test_error" in one_error_line(capsys)
    bad.write_text("")
    assert report(["--from-runs-csv", str(bad), "--out", str(out)]) == 2
    assert "cannot be read as CSV (EmptyDataError)" in one_error_line(capsys) and not out.exists()


def test_an_out_that_is_a_file_fails_with_one_line_and_leaves_it(tmp_path, capsys):
    runs, out = study(tmp_path), tmp_path / "results"
    out.write_text("a file the user keeps")
    assert report([str(runs), "--out", str(out)]) == 2
    assert (
        one_error_line(capsys)
        == f"error: --out = {str(out)!r}: a file, not a directory; give the results root (default: results)"
    )
    assert out.read_text() == "a file the user keeps"
