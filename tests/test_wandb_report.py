"""The study in W&B, offline: the report run's files read back, ``wandb sync --dry-run`` lists it, and
neither a missing W&B nor a missing network fails anything with a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from src.report.wandb_report import publish_study
from src.wandb_sync import main as sync_main
from src.wandb_sync import offline_runs

from .conftest import ROOT
from .test_wandb import offline_env, read_offline_run  # noqa: F401  (offline_env: a fixture)

REPORT = ROOT / "results" / "demo"  # a committed report: its files stand in for a freshly built one


def report_files() -> dict[str, str | bytes]:
    names = ("summary.csv", "claims.csv", "meta.json")
    files: dict[str, str | bytes] = {name: (REPORT / name).read_text(encoding="utf-8") for name in names}
    files.update({name: (REPORT / name).read_bytes() for name in ("error_vs_batch.png", "error_by_norm.png")})
    return files


def test_the_report_run_is_offline_in_the_study_group_and_reads_back(offline_env, tmp_path, capsys):  # noqa: F811
    folder = publish_study("demo", report_files(), tmp_path / "unused")
    assert folder is not None and folder.parent == Path(offline_env["WANDB_DIR"]) / "wandb"
    assert folder.name.startswith("offline-run-")
    assert f"published demo to W&B (offline): {folder}" in capsys.readouterr().out
    run = read_offline_run(next(folder.glob("run-*.wandb")))
    assert run["group"] == "demo" and run["job_type"] == "report" and run["name"] == "demo/report"
    assert run["config"]["study"] == "demo" and run["exit_code"] == 0
    logged = run["history"]  # wandb.Table and wandb.Image values, logged by key (nested keys joined by ".")
    assert logged["summary._type"] == "table-file" and logged["claims._type"] == "table-file"
    assert logged["error_vs_batch._type"] == "image-file" and logged["error_by_norm._type"] == "image-file"
    assert run["summary"]["title"] == "Does BN degrade at batch 2 while GN does not?"
    table = folder / "files" / logged["summary.path"]
    assert table.exists() and '"columns"' in table.read_text()
    listed = subprocess.run(
        [sys.executable, "-m", "wandb", "sync", "--dry-run", str(folder)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert listed.returncode == 0 and folder.name in listed.stdout + listed.stderr
    assert offline_runs(Path(offline_env["WANDB_DIR"])) == [folder]


def test_each_published_run_is_whole_on_disk_when_its_folder_is_named(offline_env, tmp_path):  # noqa: F811
    # W&B's service may write the transaction log after run.finish() returns: 1 in 12 logs read at once
    # held only their header under load, before publish_study waited for the service
    for attempt in range(4):
        folder = publish_study("demo", report_files(), tmp_path / "unused")
        assert folder is not None, attempt
        run = read_offline_run(next(folder.glob("run-*.wandb")))
        assert run.get("group") == "demo" and run.get("exit_code") == 0, (attempt, sorted(run))


def test_a_missing_wandb_is_one_warning_line(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb raises ImportError
    assert publish_study("demo", report_files(), tmp_path) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("warning: demo: not published to W&B (ModuleNotFoundError")


def test_a_failing_wandb_is_one_warning_line(offline_env, monkeypatch, tmp_path, capsys):  # noqa: F811
    import wandb

    def fail(**kwargs):
        raise RuntimeError("no service")

    monkeypatch.setattr(wandb, "init", fail)
    assert publish_study("demo", report_files(), tmp_path) is None
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["warning: demo: not published to W&B (RuntimeError: no service)"]


def test_sync_without_a_key_or_a_network_fails_in_one_line(offline_env, tmp_path, monkeypatch, capsys):  # noqa: F811
    run = tmp_path / "multirun" / "s" / "batch=2,norm=bn" / "wandb" / "offline-run-20260101_000000-abc"
    run.mkdir(parents=True)
    assert sync_main(["s", "--root", str(tmp_path / "multirun")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no W&B API key" in err[0]
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # nothing listens on the discard port
    assert sync_main(["s", "--root", str(tmp_path / "multirun")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cannot reach http://127.0.0.1:9" in err[0] and "1 runs not synced" in err[0]
    assert sync_main(["nothing", "--root", str(tmp_path / "multirun")]) == 1
    assert "no offline W&B runs" in capsys.readouterr().err
