"""Shared fixtures: composing the project's Hydra config the way src.train does."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
DATA = Path(__file__).resolve().parent / "data"
SHARED_DATASETS = ROOT.parent / "shared" / "datasets"
PYTHON = sys.executable


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
