"""summary.md reads as a study's record: slices in numeric order, each published table once, launch
commands that run from the project, and a report that can be rerun into the multirun it reads."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd

from src.report.__main__ import main as report_main
from src.report.commands import project_relative, sweep_command

from .test_report import make_record, write_records

REFERENCE = {
    "source": "GN paper Table 2",
    "conditions": "ImageNet",
    "batches": [32, 2],
    "rows": {"bn": [23.6, 34.7], "gn": [24.1, 24.1]},
}
LAUNCH = {
    "config_name": "train",
    "config_dir": None,
    "hydra_overrides": ["hydra.sweep.dir=/work/study/multirun/sched", "hydra/launcher=packed"],
    "multirun": True,
}


def schedules(study: str = "sched", epochs: tuple[int, ...] = (16, 32, 8)) -> list[dict[str, Any]]:
    """bn and gn at batch 2 and 32 at each schedule length, 2 seeds, launched from another checkout."""
    records = []
    for length in epochs:
        for norm in ("bn", "gn"):
            for batch in (2, 32):
                for seed in range(2):
                    record = make_record(study, norm, batch, seed, 30.0 + seed - length / 8, epochs=length)
                    record["config"].update(epochs=length, report={"budget": "fixed", "references": [REFERENCE]})
                    record["overrides"].append(f"epochs={length}")
                    record["launch"] = LAUNCH
                    records.append(record)
    return records


def test_slices_run_in_numeric_order_and_published_tables_are_printed_once(tmp_path):
    write_records(tmp_path / "m", schedules())
    assert report_main([str(tmp_path / "m"), "--out", str(tmp_path / "out")]) == 0
    summary = (tmp_path / "out" / "sched" / "summary.md").read_text()
    headings = [line for line in summary.splitlines() if line.startswith("## fashion_mnist_small")]
    assert headings == [f"## fashion_mnist_small · small_cnn · epochs={e}" for e in (8, 16, 32)]
    assert summary.count("Published: GN paper Table 2") == 1 and summary.count("## Published numbers") == 1
    table = pd.read_csv(tmp_path / "out" / "sched" / "summary.csv")
    assert list(dict.fromkeys(table["epochs"])) == [8, 16, 32]


def test_launch_commands_are_relative_to_the_project(tmp_path):
    write_records(tmp_path / "m", schedules())
    assert report_main([str(tmp_path / "m"), "--out", str(tmp_path / "out")]) == 0
    summary = (tmp_path / "out" / "sched" / "summary.md").read_text()
    launched = [line for line in summary.splitlines() if line.startswith("- runs launched by:")]
    assert launched and all("/work/study" not in line for line in launched)
    assert "hydra.sweep.dir=multirun/sched hydra/launcher=packed" in launched[0]
    meta = json.loads((tmp_path / "out" / "sched" / "meta.json").read_text())
    assert all("hydra.sweep.dir=multirun/sched" in command for command in meta["runs_launched_by"])
    assert project_relative("/elsewhere/data.npz") == "/elsewhere/data.npz"  # no checkout folder: kept
    command = sweep_command({"config_dir": "/work/study/sweeps", "multirun": True}, [["norm=bn"]])
    assert command == "python -m src.train -m --config-dir sweeps norm=bn"


def test_a_report_rerun_into_the_multirun_it_reads_counts_no_run_twice(tmp_path):
    """make demo: the report goes to multirun/demo/report, which the next report of multirun/demo reads."""
    multirun = tmp_path / "multirun"
    write_records(multirun, schedules(epochs=(8,)))
    out = multirun / "sched" / "report"
    for _ in range(2):
        assert report_main([str(multirun / "sched"), "--out", str(out)]) == 0
        assert pd.read_csv(out / "sched" / "not_counted.csv").empty
        assert len(pd.read_csv(out / "sched" / "runs.csv")) == 8
        summary = (out / "sched" / "summary.md").read_text()
        assert "duplicate" not in summary and "## Runs not counted" not in summary
    assert len((out / "sched" / "runs.jsonl").read_text().splitlines()) == 8
    # a second run of the same cell and seed is still a duplicate
    again = make_record("sched", "bn", 2, 0, 31.0, epochs=8)
    again["config"]["epochs"] = 8
    again["overrides"].append("epochs=8")
    (tmp_path / "other" / "sched" / "x").mkdir(parents=True)
    (tmp_path / "other" / "sched" / "x" / "result.json").write_text(json.dumps(again))
    assert report_main([str(multirun / "sched"), str(tmp_path / "other"), "--out", str(tmp_path / "o2")]) == 0
    reasons = pd.read_csv(tmp_path / "o2" / "sched" / "not_counted.csv").reason.tolist()
    assert len(reasons) == 1 and reasons[0].startswith("duplicate of")
