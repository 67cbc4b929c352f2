"""The notebook API: ``load_runs(path_or_paths)`` gives one tidy row per run, the same setting columns as
summary.csv, and docs/notebook.md's example runs as written."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from src.report import load_runs
from src.report.__main__ import main as report_main
from src.report.load import load_run_set

from .conftest import ROOT
from .test_report import make_record, write_records

NOTEBOOK = ROOT / "docs" / "notebook.md"


def augment_records(study: str = "demo") -> list[dict[str, Any]]:
    """bn and gn at batch 2 and 32 under two crop paddings, 2 seeds each."""
    records = []
    for norm in ("bn", "gn"):
        for batch in (2, 32):
            for padding in ("crop_flip", "crop_flip_reflect"):
                for seed in range(2):
                    error = 30.0 + (5.0 if norm == "bn" and batch == 2 else 0.0) + seed
                    record = make_record(study, norm, batch, seed, error)
                    record["config"]["dataset"] = {"augment": padding}
                    record["overrides"].append(f"dataset.augment={padding}")
                    records.append(record)
    return records


def test_load_runs_takes_one_path_as_a_string_or_a_path_or_a_list(tmp_path, monkeypatch):
    root = write_records(tmp_path / "multirun", augment_records())
    walked: list[Path] = []
    original = Path.rglob

    def rglob(self: Path, pattern: str):  # a string read as its letters would walk "/" and the cwd
        walked.append(self)
        return original(self, pattern)

    monkeypatch.setattr(Path, "rglob", rglob)
    by_text = load_runs(str(root))
    assert {str(p) for p in walked} == {str(root)} and len(by_text) == 16
    assert by_text.attrs["not_counted"] == []
    for given in (root, [root], [str(root)], (root,)):
        assert load_runs(given).equals(by_text)
    assert len(load_run_set(str(root)).runs) == 16


def test_load_runs_is_tidy_and_summary_csv_has_the_same_setting_columns(tmp_path):
    root = write_records(tmp_path / "multirun", augment_records())
    runs = load_runs(root)
    settings = ["study", "dataset", "model", "norm", "batch", "epochs", "seed", "dataset.augment"]
    assert list(runs.columns[: len(settings)]) == settings
    metrics = ["test_error", "val_error", "best_val_error", "train_loss"]
    assert list(runs.columns[len(settings) : len(settings) + 4]) == metrics
    assert set(runs["dataset.augment"]) == {"crop_flip", "crop_flip_reflect"} and set(runs["model"]) == {"small_cnn"}

    spec = tmp_path / "demo.yaml"
    spec.write_text("report: {budget: fixed, factors: [dataset.augment], claims: []}\n")
    out = tmp_path / "results"
    assert report_main([str(root), "--out", str(out), "--claims", str(spec)]) == 0
    summary = pd.read_csv(out / "demo" / "summary.csv")
    assert list(summary.columns[:6]) == ["dataset", "model", "epochs", "dataset.augment", "norm", "batch"]
    assert set(summary["model"]) == {"small_cnn"}  # the plain model name, never "small_cnn · dataset.augment=…"
    assert set(summary["slice"]) == {f"small_cnn · dataset.augment={p}" for p in ("crop_flip", "crop_flip_reflect")}
    assert len(summary) == 8 and summary["n"].eq(2).all()
    runs_csv = pd.read_csv(out / "demo" / "runs.csv")
    assert list(runs_csv.columns[: len(settings)]) == settings  # runs.csv in the same order
    assert load_runs(out / "demo").drop(columns=["run_dir"]).shape == runs.drop(columns=["run_dir"]).shape


def notebook_code() -> str:
    """The python blocks of docs/notebook.md, in order."""
    blocks = re.findall(r"```python\n(.*?)```", NOTEBOOK.read_text(encoding="utf-8"), flags=re.DOTALL)
    assert blocks, "docs/notebook.md has no python example"
    return "\n".join(blocks)


def test_the_notebook_example_runs_on_a_small_study(tmp_path, capsys, monkeypatch):
    """docs/notebook.md's code, with results/demo replaced by a report of synthetic records."""
    root = write_records(tmp_path / "multirun", augment_records())
    out = tmp_path / "results"
    assert report_main([str(root), "--out", str(out)]) == 0
    capsys.readouterr()
    code = notebook_code()
    assert "results/demo" in code
    monkeypatch.syspath_prepend(str(ROOT))
    exec(compile(code.replace("results/demo", str(out / "demo")), str(NOTEBOOK), "exec"), {})
    printed = capsys.readouterr().out
    assert "16 runs; 0 not counted" in printed and "test_error_ci95_low" in printed


@pytest.mark.parametrize("name", ["load_runs", "load_run_set"])
def test_the_notebook_names_what_it_documents(name):
    assert re.search(rf"`(src\.report\.)?{name}\b", NOTEBOOK.read_text(encoding="utf-8"))
