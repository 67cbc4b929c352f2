"""Checks that make a bad config fail before any training, with one line naming key, value and rule."""

from __future__ import annotations

import copy
import difflib
import logging
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import nn

from src.run.config_keys import COMPUTATION_KEYS, STEERING_KEYS
from src.training.callbacks import WEIGHT_CHOICES

log = logging.getLogger(__name__)


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key, the value and what is allowed."""


def require_positive_int(value: Any, key: str, meaning: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{key}={value!r} is invalid: it must be an integer >= 1 ({meaning})")


def check_reuse_from(value: Any) -> None:
    """``reuse_from``: a list of existing directories (sweep directories whose runs may be copied)."""
    items = [value] if isinstance(value, str) else value
    if items is None:
        return
    if not isinstance(items, Sequence):
        raise ConfigError(f"reuse_from={value!r} is invalid: give a list of sweep directories, e.g. [multirun/<study>]")
    for index, item in enumerate(items):
        if not isinstance(item, str) or not Path(item).is_dir():
            raise ConfigError(
                f"reuse_from[{index}]={item!r} is invalid: not a directory; give sweep directories whose completed "
                "runs of the same config are copied instead of retrained (e.g. multirun/small_batch_cifar10)"
            )


#: Lightning's ``precision`` values (lightning_fabric's ``_PRECISION_INPUT``; a test keeps the two alike)
PRECISIONS = (
    "16-mixed", "bf16-mixed", "32-true", "64-true", "16-true", "bf16-true", "transformer-engine",
    "transformer-engine-float16", "16", "32", "64", "bf16", 16, 32, 64,
)  # fmt: skip
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")  # torch.compile's


#: Names other frameworks give to what normlab calls otherwise; a top-level key by one of them is refused.
FOREIGN_NAMES = {
    "lr": "optim.base_lr",
    "learning_rate": "optim.base_lr",
    "weight_decay": "optim.optimizer.weight_decay",
    "momentum": "optim.optimizer.momentum",
    "batch_size": "batch",
    "max_epochs": "epochs",
    "num_epochs": "epochs",
    "groups": "norm_groups",
    "num_groups": "norm_groups",
    "ws": "standardize_weights",
}


def known_key_names(cfg: DictConfig) -> list[str]:
    """Every key normlab reads, by its dotted name one level down (``norm_groups``, ``norm.layer``,
    ``optim.base_lr``): the names a typed key is compared with."""
    names = [*COMPUTATION_KEYS, *STEERING_KEYS]
    for top in names[:]:
        node = cfg.get(top)
        if isinstance(node, DictConfig):
            names.extend(f"{top}.{sub}" for sub in node)
    return names


def near_misses(key: str, known: Sequence[str]) -> list[str]:
    """The known name closest to ``key`` at a similarity ratio of 0.8 or more, as typed or with ``_`` as ``.``."""
    return difflib.get_close_matches(key, known, n=1, cutoff=0.8) or difflib.get_close_matches(
        key.replace("_", "."), known, n=1, cutoff=0.8
    )


def check_near_miss_keys(cfg: DictConfig) -> None:
    """A top-level key normlab does not read is a free annotation (``+note=…``: recorded, hashed) unless it
    is a near miss of a key it does read (``+norm_group=8`` for ``norm_groups``, ``+epoch=3`` for ``epochs``,
    ``+optim_base_lr=…`` for ``optim.base_lr``), or another framework's name for one (:data:`FOREIGN_NAMES`):
    that one would train the default under another hash, so it is refused (:func:`near_misses`).
    The value is shown as typed, never resolved (an ``${oc.env:…}`` stays one)."""
    known = known_key_names(cfg)
    for key in sorted(set(cfg.keys()) - set(known) - {"hydra"}):
        key = str(key)
        close = [FOREIGN_NAMES[key]] if key in FOREIGN_NAMES else near_misses(key, known)
        if close:
            value = OmegaConf.to_container(cfg, resolve=False).get(key)  # type: ignore[union-attr]
            shown = "{…}" if isinstance(value, dict) else repr(value)
            raise ConfigError(
                f"{key}={shown} is invalid: normlab reads no {key!r}; did you mean {close[0]}? (a free "
                "annotation needs a name unlike any key, e.g. +note=…)"
            )


def check_optim(cfg: DictConfig) -> None:
    """``optim.base_batch`` (an integer >= 1), ``scale_lr`` (true/false), ``warmup_epochs`` (0 up to
    ``epochs``: a longer ramp never reaches the learning rate the record names) and the optimizer's
    ``momentum`` in [0, 1) and ``weight_decay`` >= 0 where it has them."""
    optim = cfg.optim
    require_positive_int(optim.get("base_batch", 32), "optim.base_batch", "the batch base_lr is given for")
    if not isinstance(optim.get("scale_lr", True), bool):
        raise ConfigError(f"optim.scale_lr={optim.get('scale_lr')!r} is invalid: it must be true or false")
    warmup = optim.get("warmup_epochs", 0)
    if isinstance(warmup, bool) or not isinstance(warmup, int | float) or not 0 <= warmup <= cfg.epochs:
        raise ConfigError(
            f"optim.warmup_epochs={warmup!r} is invalid: it must be a number from 0 to epochs={cfg.epochs} "
            "(epochs of linear warmup)"
        )
    optimizer = optim.get("optimizer") or {}
    for key, what in (
        ("lr", "optim.base_lr × batch / optim.base_batch, then the schedule: set optim.base_lr"),
        ("params", "the network's parameters"),
    ):
        if key in optimizer:
            typed = OmegaConf.to_container(optimizer, resolve=False)[key]  # type: ignore[index]
            raise ConfigError(
                f"optim.optimizer.{key}={typed!r} is invalid: normlab passes the optimizer its {key} ({what})"
            )
    for key, low, high, rule in (("momentum", 0, 1, "in [0, 1)"), ("weight_decay", 0, math.inf, ">= 0")):
        value = optimizer.get(key, 0)
        if isinstance(value, bool) or not isinstance(value, int | float) or not (low <= value < high):
            raise ConfigError(f"optim.optimizer.{key}={value!r} is invalid: it must be a number {rule}")


def check_steering(cfg: DictConfig) -> None:
    """The steering keys with a fixed set of values: ``cpu_threads``, ``save_weights``, ``compile_mode``,
    ``trainer.precision`` and ``trainer.devices``."""
    threads = cfg.get("cpu_threads")
    if threads is not None:
        require_positive_int(threads, "cpu_threads", "torch's intra-op threads per run; null: PyTorch's default")
    for key, allowed in (("save_weights", WEIGHT_CHOICES), ("compile_mode", COMPILE_MODES)):
        value = cfg.get(key, allowed[0])
        if value not in allowed:
            raise ConfigError(f"{key}={value!r} is invalid: choose one of {', '.join(allowed)}")
    trainer = cfg.get("trainer") or {}
    precision = trainer.get("precision", "32-true")
    if precision not in PRECISIONS:
        allowed = ", ".join(dict.fromkeys(str(p) for p in PRECISIONS))
        raise ConfigError(f"trainer.precision={precision!r} is invalid: choose one of {allowed}")
    devices = trainer.get("devices", "auto")
    if isinstance(devices, bool) or (isinstance(devices, int) and devices < 1 and devices != -1):
        raise ConfigError(
            f"trainer.devices={devices!r} is invalid: give a count >= 1, -1 (every GPU), auto or a list of GPU ids"
        )


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
    check_trainer(cfg)
    ckpt_path = cfg.get("ckpt_path")
    if ckpt_path is not None and not Path(str(ckpt_path)).is_file():
        raise ConfigError(
            f"ckpt_path={ckpt_path!r} is invalid: no such file; give a Lightning checkpoint such as "
            "<run dir>/checkpoints/last.ckpt (a run interrupted in its own directory resumes without it)"
        )
    check_reuse_from(cfg.get("reuse_from"))
    check_near_miss_keys(cfg)
    check_optim(cfg)
    check_steering(cfg)
    fused = cfg.get("fused_step", "off")
    if fused not in FUSED_CHOICES:
        raise ConfigError(f"fused_step={fused!r} is invalid: choose one of {', '.join(FUSED_CHOICES)}")
    study = cfg.get("study")
    if not isinstance(study, str) or not STUDY_NAME.fullmatch(study):
        raise ConfigError(
            f"study={study!r} is invalid: it must be a plain name (letters, digits, '_', '-', '.'; no '/' or '..'),"
            " since it names the sweep directory multirun/<study>/"
        )


#: Lightning Trainer keys that change how much is trained, each with its default and what to use instead:
#: a run's record names its epochs and batch, and a report pools runs by them, so a trainer key that trains
#: less (or in other steps) would be counted as what it is not. ``debug`` modes (conf/debug/) set the limits.
TRAINER_LIMITS: dict[str, tuple[tuple[Any, ...], str]] = {
    "max_steps": ((-1, None), "use epochs=N"),
    "min_steps": ((None, 0), "use epochs=N"),
    "min_epochs": ((None, 0), "use epochs=N"),
    "max_time": ((None,), "use epochs=N"),
    "fast_dev_run": ((False, 0, None), "use debug=fast (runs under debug/, never counted)"),
    "limit_train_batches": ((None, 1.0, 1), "use debug=fast, or dataset.train_size=N for fewer images"),
    "limit_val_batches": ((None, 1.0, 1), "use debug=fast"),
    "limit_test_batches": ((None, 1.0, 1), "use debug=fast"),
    "overfit_batches": ((0, 0.0, None), "use debug=overfit"),
    "accumulate_grad_batches": ((1, None), "batch=N is the batch a norm sees; accumulation is not supported"),
}


def check_trainer(cfg: DictConfig) -> None:
    """Refuse trainer keys that would make the record misstate the run (:data:`TRAINER_LIMITS`), and a
    ``trainer.max_epochs`` other than ``epochs``; warn when CPU DDP starts more processes than cores."""
    trainer = cfg.get("trainer") or {}
    debug = cfg.get("debug")
    max_epochs = trainer.get("max_epochs", cfg.epochs)
    if max_epochs != cfg.epochs:
        raise ConfigError(
            f"trainer.max_epochs={max_epochs!r} is invalid: it follows epochs={cfg.epochs} "
            "(the epochs the record names); use epochs=N"
        )
    for key, (defaults, instead) in TRAINER_LIMITS.items():
        value = trainer.get(key)
        if key in trainer and value not in defaults and not (debug and key.startswith(("limit_", "overfit"))):
            raise ConfigError(f"trainer.{key}={value!r} is invalid: normlab records every run whole; {instead}")
    processes = int(trainer.get("devices", 1) or 1) * int(trainer.get("num_nodes", 1) or 1)
    cores = os.cpu_count() or 1
    if str(trainer.get("accelerator", "auto")) == "cpu" and processes > cores:
        log.warning(
            "trainer.devices=%s on a CPU with %d cores: %d DDP processes share them, and the global batch and "
            "learning rate are %d× a one-process run's",
            trainer.get("devices"),
            cores,
            processes,
            processes,
        )


def check_device(cfg: DictConfig) -> None:
    """``trainer=gpu`` where torch sees no GPU: one line with what to do (checked where the job will run:
    by a local sweep before its first job, by a single run; a cluster launcher's jobs run elsewhere)."""
    accelerator = str((cfg.get("trainer") or {}).get("accelerator", "auto"))
    if accelerator in ("gpu", "cuda") and not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise ConfigError(
            f"trainer.accelerator={accelerator} (trainer=gpu) is invalid here: torch {torch.__version__} ({build}) "
            "sees no GPU; use trainer=cpu, or install a CUDA build (make setup TORCH_SPEC=..., docs/gpu.md)"
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
