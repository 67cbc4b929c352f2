"""The command line's habits (issue 32): tab completion through the normlab-train command, and --help that
never loads torch (so it answers in about a second, not eleven)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT


def test_help_does_not_import_torch_or_lightning():
    """Imports, not seconds: a test never depends on timing (python -X importtime lists every import)."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "src.train", "--help"], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0 and "== Studies" in done.stdout
    imported = {line.split("|")[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert not {"torch", "pytorch_lightning", "lightning_fabric"} & imported


def test_tab_completion_lists_config_choices_through_the_command():
    """eval "$(normlab-train -sc install=bash)" then normlab-train norm=g<TAB>: Hydra's completion query."""
    command = shutil.which("normlab-train", path=os.path.dirname(sys.executable))
    if command is None:
        pytest.skip("normlab-train is installed by make setup (pip install -e .)")
    environment = {**os.environ, "COMP_LINE": "normlab-train norm=g"}
    done = subprocess.run([command, "-sc", "query=bash"], cwd=ROOT, env=environment, capture_output=True, text=True)
    assert done.stdout.split() == ["norm=ghost", "norm=gn"]
