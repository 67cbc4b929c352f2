"""Shared fixtures: composing the project's Hydra config the way src.train does."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA = Path(__file__).resolve().parent / "data"
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
PYTHON = sys.executable


def run_train(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: int = 300
) -> subprocess.CompletedProcess:
    """``python -m src.train *args`` in a subprocess (the project on PYTHONPATH), output captured."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run(
        [PYTHON, "-m", "src.train", *args], cwd=cwd, env=environment, capture_output=True, text=True, timeout=timeout
    )


def config_options(group: str) -> list[str]:
    """Every option of a config group, from the files in conf/<group>/."""
    return sorted(path.stem for path in (CONF / group).glob("*.yaml"))


@pytest.fixture
def compose_cfg() -> Iterator[Callable[..., DictConfig]]:
    """compose_cfg(*overrides) -> the composed ``train`` config (Hydra's compose API)."""
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):

        def _compose(*overrides: str) -> DictConfig:
            return compose("train", overrides=list(overrides))

        yield _compose


@pytest.fixture(autouse=True)
def _quiet_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run every test in its own directory so nothing is written into the checkout."""
    monkeypatch.chdir(tmp_path)


class Interrupted(Exception):
    """Stands in for a kill at the start of a run's second epoch (its first checkpoint written)."""


@contextmanager
def killed_at_second_epoch(monkeypatch, module_class) -> Iterator[None]:
    """Within the block, training ``module_class`` raises :class:`Interrupted` as its second epoch starts
    (the block must train it); afterwards the class trains as usual again."""
    original = module_class.on_train_epoch_start

    def killed(self):
        if self.current_epoch == 1:
            raise Interrupted
        original(self)

    monkeypatch.setattr(module_class, "on_train_epoch_start", killed)
    try:
        with pytest.raises(Interrupted):
            yield
    finally:
        monkeypatch.setattr(module_class, "on_train_epoch_start", original)
