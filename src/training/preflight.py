"""Build before training: what each run of a command would build, checked before its first run starts.

:func:`src.training.validation.validate_config` checks the keys every run has; the values only a class can
judge (``dataset.augment``, a dataset file, a batch larger than the training split, GN groups that do not
divide a layer's channels, BN at batch 1 on 1×1 maps) fail when a run builds its data and network. Without
this, a sweep would write a failed run directory for each of its jobs, one after another. :func:`first_unbuildable`
builds each distinct configuration as a run does (:func:`src.training.experiment.build_data`, then
:func:`~src.training.experiment.build_network`: norm, network, weight standardization and one training-mode
forward at the run's batch; then its learning-rate rule and optimizer, :func:`build_optimizer`) and returns
the first that fails, with the class's one-line message.

The data is set up once per dataset configuration (its batch included: the batch is the datamodule's), the
network once per configuration less its seed; each is dropped once checked, so at most one dataset is held.
The runs' results do not depend on it: each run seeds its random number generators when it starts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf

#: the parts of a run's config its data and network are built from (src/training/experiment.py)
DATA_KEYS = ("dataset", "batch")
NETWORK_KEYS = ("dataset", "norm", "model", "batch", "standardize_weights", "optim")
#: what a class raises for a value it cannot take (a missing file, a package a dataset needs): the message
#: names the key and value; anything else is a fault of the code and keeps its traceback
INPUT_ERRORS = (ValueError, OSError, ImportError)


def part(cfg: DictConfig, keys: Sequence[str]) -> str:
    """The resolved values of ``keys`` in ``cfg``, as one comparable string."""
    return json.dumps({key: _plain(OmegaConf.select(cfg, key)) for key in keys}, sort_keys=True, default=str)


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def build_optimizer(cfg: DictConfig, net: Any) -> None:
    """The run's learning-rate rule (its schedule evaluated over training) and its optimizer over ``net``'s
    parameters, as the run's module builds them; the optimizer's own refusal is named ``optim.optimizer``."""
    from src.training.experiment import lr_arguments
    from src.training.module import lr_rule

    rule = lr_rule(global_batch=int(cfg.batch), **lr_arguments(cfg.optim))
    try:
        rule.optimizer(params=net.parameters(), lr=rule.lr)
    except (TypeError, ValueError) as error:
        raise ValueError(f"optim.optimizer is invalid: {error}") from None


def first_unbuildable(configs: Sequence[DictConfig]) -> tuple[int, str] | None:
    """The index of the first configuration whose data or network cannot be built, and why (the class's
    message); None when every one builds. Configurations are built grouped by their data (in order of
    first appearance), so the index is the first failing one of its group."""
    from src.training.experiment import build_data, build_network  # torch: only when a command trains

    by_data: dict[str, list[int]] = {}
    for index, cfg in enumerate(configs):
        by_data.setdefault(part(cfg, DATA_KEYS), []).append(index)
    for indices in by_data.values():
        try:
            datamodule = build_data(configs[indices[0]])
        except INPUT_ERRORS as error:
            return indices[0], str(error)
        built: set[str] = set()
        for index in indices:
            network = part(configs[index], NETWORK_KEYS)
            if network in built:
                continue
            built.add(network)
            try:
                _, net = build_network(configs[index], datamodule)
                build_optimizer(configs[index], net)
            except INPUT_ERRORS as error:
                return index, str(error)
        del datamodule
    return None
