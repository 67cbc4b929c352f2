"""The run record, ``result.json``: the contract between training and every report.

Written once per run, atomically (a temporary file in the same directory, then a rename), so a reader
sees either the whole record or none.
"""

from __future__ import annotations

import json
import os
import platform
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from src.atomic import write_text_atomic

RECORD_FILE = "result.json"
PROJECT_ROOT = Path(__file__).resolve().parents[1]
COMMIT_VARIABLE = "NORMLAB_COMMIT"


def write_record(run_dir: Path, record: dict[str, Any]) -> None:
    """Write ``run_dir/result.json`` atomically, with secret environment values redacted."""
    from src.run_state import redact

    write_text_atomic(Path(run_dir) / RECORD_FILE, redact(json.dumps(record, indent=2, default=str)) + "\n")


def read_record(path: Path) -> dict[str, Any]:
    """Load one ``result.json``; raises ``ValueError`` for a file that is not a JSON object."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a JSON object")
    return data


def git_commit(root: Path = PROJECT_ROOT, ignore: Sequence[str] = ()) -> str:
    """The project's commit, with ``+dirty`` when tracked files have uncommitted changes (outside the
    paths in ``ignore``, relative to ``root``: e.g. the report's own output directory).

    A copy of the tree sent elsewhere (a GPU machine) names the commit it was sent from through the
    environment variable ``NORMLAB_COMMIT``, which takes precedence; without git: ``unknown``."""
    if os.environ.get(COMMIT_VARIABLE):
        return os.environ[COMMIT_VARIABLE]
    pathspec = ["--", ".", *(f":(exclude){path}" for path in ignore)] if ignore else []
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", *pathspec],
            cwd=root,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return os.environ.get(COMMIT_VARIABLE, "unknown")
    return f"{commit}+dirty" if dirty else commit


# the packages whose versions can change a run's numbers (distribution names)
NUMERIC_PACKAGES = ("torch", "pytorch-lightning", "torchmetrics", "numpy", "hydra-core", "omegaconf")


def package_versions(names: Sequence[str] = NUMERIC_PACKAGES) -> dict[str, str]:
    """Installed versions of ``names`` (``not installed`` for a missing one), for every run record."""
    versions = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def machine_description() -> dict[str, str]:
    """Host, OS, CPU and (when torch sees one) GPU of this machine, for results' provenance."""
    machine = {
        "hostname": socket.gethostname(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": str(os.cpu_count()),
        "python": platform.python_version(),
    }
    torch = sys.modules.get("torch")  # only when already imported: the report need not load torch for this
    if torch is not None and torch.cuda.is_available():
        machine["gpu"] = torch.cuda.get_device_name(0)
    return machine
