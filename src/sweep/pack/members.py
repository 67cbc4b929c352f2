"""A pack's members: each built exactly as its unpacked run (under its own seed), and each with its own
copy of the process-wide RNG states (:class:`MemberRng`), from which it draws its data order and
augmentation as its unpacked run would."""

from __future__ import annotations

import random
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytorch_lightning as pl
import torch
from torch import nn

from src.run.lifecycle import RunSpec
from src.training.experiment import build_model
from src.training.process import run_settings
from src.training.validation import validate_config


def _numpy_state() -> tuple[Any, ...]:
    """NumPy's global RNG state as plain Python values (a checkpoint loads it without pickled arrays)."""
    name, keys, position, has_gauss, cached = np.random.get_state()
    return (name, keys.tolist(), position, has_gauss, cached)


class MemberRng:
    """One member's copy of the process-wide RNG states (Python, NumPy, torch CPU and CUDA).

    The unpacked run draws its data order and augmentation from the global RNG, seeded with its seed;
    a packed member does the same inside :meth:`active`, which swaps its states in and, on exit, saves
    them and restores the states that were there before.
    """

    def __init__(self) -> None:
        self.state = self.capture()

    @staticmethod
    def capture() -> dict[str, Any]:
        return {
            "python": random.getstate(),
            "numpy": _numpy_state(),
            "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    @staticmethod
    def restore(state: dict[str, Any]) -> None:
        random.setstate(state["python"])
        np.random.set_state(state["numpy"])
        torch.set_rng_state(state["torch"])
        if state.get("cuda") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])

    @contextmanager
    def active(self) -> Iterator[None]:
        outside = self.capture()
        self.restore(self.state)
        try:
            yield
        finally:
            self.state = self.capture()
            self.restore(outside)


@dataclass
class BuiltMember:
    """A member built as its unpacked run would be: data, norm, network, and its RNG after building."""

    member: RunSpec
    datamodule: pl.LightningDataModule
    norm: Any
    net: nn.Module
    rng: MemberRng


def build_member(member: RunSpec) -> BuiltMember:
    """Build ``member`` under its seed exactly as :func:`src.training.experiment.build_experiment` does; its RNG
    state after building is what its unpacked run's training starts from."""
    cfg = member.cfg
    validate_config(cfg)
    with run_settings(cfg.seed, cfg.get("cpu_threads")):
        datamodule, norm, net = build_model(cfg)
        rng = MemberRng()
    return BuiltMember(member, datamodule, norm, net, rng)
