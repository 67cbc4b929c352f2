"""Quick-check runs under ``debug/`` (``debug=fast``, ``debug=overfit``) are never committed and are
removed by ``make clean``, like ``multirun/`` and ``outputs/``."""

from __future__ import annotations

import shutil
import subprocess

import pytest

from .conftest import ROOT


@pytest.mark.skipif(shutil.which("git") is None or not (ROOT / ".git").exists(), reason="needs git and a checkout")
def test_debug_runs_are_ignored_by_git():
    result = subprocess.run(
        ["git", "check-ignore", "-q", "debug/mine/norm=gn/result.json"], cwd=ROOT, capture_output=True
    )
    assert result.returncode == 0, "debug/ is not in .gitignore"
    kept = subprocess.run(["git", "check-ignore", "-q", "conf/debug/fast.yaml"], cwd=ROOT, capture_output=True)
    assert kept.returncode == 1  # the debug configs themselves are tracked


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_clean_removes_debug_runs_and_keeps_the_debug_configs(tmp_path):
    shutil.copy(ROOT / "Makefile", tmp_path / "Makefile")
    for folder in ("debug/mine/norm=gn", "multirun/demo", "conf/debug", "results/demo"):
        (tmp_path / folder).mkdir(parents=True)
    (tmp_path / "conf" / "debug" / "fast.yaml").write_text("# a config\n")
    subprocess.run(["make", "--no-print-directory", "clean"], cwd=tmp_path, check=True, capture_output=True)
    assert not (tmp_path / "debug").exists() and not (tmp_path / "multirun").exists()
    assert (tmp_path / "conf" / "debug" / "fast.yaml").exists() and (tmp_path / "results" / "demo").exists()
