"""Where a run or a report came from: the code's commit, the machine, package versions, and the
redaction of secrets from anything written. A leaf module: it imports nothing from ``src``.
"""

from __future__ import annotations

import os
import platform
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
COMMIT_VARIABLE = "NORMLAB_COMMIT"
SECRET_NAME = re.compile(r"(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL)", re.IGNORECASE)
# the packages whose versions can change a run's numbers (distribution names)
NUMERIC_PACKAGES = ("torch", "pytorch-lightning", "torchmetrics", "numpy", "hydra-core", "omegaconf")


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
        return "unknown"
    return f"{commit}+dirty" if dirty else commit


def training_segment(from_epoch: int) -> dict[str, Any]:
    """Who trains a run from epoch ``from_epoch`` (0-based) on: this code's commit and this machine."""
    return {"from_epoch": from_epoch, "git_commit": git_commit(), "hostname": socket.gethostname()}


def inside_project(path: Path, root: Path = PROJECT_ROOT) -> list[str]:
    """``path`` relative to ``root`` when it lies inside it, else nothing: the ``ignore`` of
    :func:`git_commit` for a command's own output folder (a report's, a benchmark's), so that what the
    command writes does not make the commit it names read ``+dirty``."""
    try:
        return [str(Path(path).resolve().relative_to(root.resolve()))]
    except ValueError:
        return []


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


def secret_values(environ: dict[str, str] | None = None) -> list[str]:
    """Values of environment variables whose names look secret (API keys, tokens, passwords), longest
    first, so that a secret containing another is replaced whole."""
    environ = dict(os.environ) if environ is None else environ
    found = {value for name, value in environ.items() if SECRET_NAME.search(name) and len(value) >= 6}
    return sorted(found, key=len, reverse=True)


def redact(text: str, secrets: list[str] | None = None) -> str:
    """``text`` with every secret environment value replaced by ``***``."""
    for value in secret_values() if secrets is None else secrets:
        text = text.replace(value, "***")
    return text
