"""Checks that make a bad config fail before any training, with one line naming key, value and rule."""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Sequence
from typing import Any

import torch
from omegaconf import DictConfig
from torch import nn


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what is allowed."""


def require_positive_int(value: Any, key: str, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is invalid: it must be an integer >= 1 ({meaning})")


def validate_config(cfg: DictConfig) -> None:
    """The top-level keys every run needs; dataset- and norm-specific checks live with their classes."""
    require_positive_int(cfg.batch, "batch", "the per-device batch size")
    require_positive_int(cfg.epochs, "epochs", "the number of training epochs")
    if not isinstance(cfg.seed, int) or isinstance(cfg.seed, bool):
        raise ConfigError(f"seed={cfg.seed!r} is invalid: it must be an integer")
    base_lr = cfg.optim.get("base_lr")
    if not isinstance(base_lr, int | float) or isinstance(base_lr, bool) or not math.isfinite(base_lr) or base_lr <= 0:
        raise ConfigError(f"optim.base_lr={base_lr!r} is invalid: it must be a finite number > 0")
    for key in ("compile", "resume", "force", "standardize_weights"):
        value = cfg.get(key)
        if value is not None and not isinstance(value, bool):
            raise ConfigError(f"{key}={value!r} is invalid: it must be true or false")
    fused = cfg.get("fused_step", "off")
    if fused not in FUSED_CHOICES:
        raise ConfigError(f"fused_step={fused!r} is invalid: choose one of {', '.join(FUSED_CHOICES)}")
    study = cfg.get("study")
    if not isinstance(study, str) or not STUDY_NAME.fullmatch(study):
        raise ConfigError(
            f"study={study!r} is invalid: it must be a plain name (letters, digits, '_', '-', '.'; no '/' or '..'),"
            " since it names the sweep directory multirun/<study>/"
        )


FUSED_CHOICES = ("off", "auto", "eager", "compile", "graph")  # src/training/fused_step.py
STUDY_NAME = re.compile(r"(?!\.{1,2}$)[A-Za-z0-9_.-]+")


def probe_forward(net: nn.Module, batch: int, input_shape: Sequence[int], norm_name: str) -> None:
    """Run one training-mode forward pass on a copy of ``net`` with a batch of the real shape, so shape
    problems (e.g. BN at batch 1 on 1×1 feature maps) fail before training, with advice."""
    probe = copy.deepcopy(net).train()
    try:
        with torch.no_grad():
            generator = torch.Generator().manual_seed(0)  # leaves the global RNG (data order, init) untouched
            probe(torch.randn(batch, *input_shape, generator=generator))
    except ValueError as error:
        if "more than 1 value per channel" in str(error):
            raise ConfigError(
                f"norm={norm_name} with batch={batch}: BN needs more than one value per channel "
                f"(batch × height × width > 1), but a layer of this model sees 1×1 feature maps; "
                f"use batch >= 2 or a batch-independent norm such as norm=gn"
            ) from None
        raise
