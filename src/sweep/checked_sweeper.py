"""Hydra's basic sweeper, with every job's config checked before the first job starts.

``python -m src.train -m batch=0,32`` would train batch 32 and only then fail on batch 0: Hydra composes
and checks each job when it launches it. :class:`CheckedSweeper` composes every job of the sweep first
(Hydra's own composition, as its launcher will) and runs :func:`src.training.validation.validate_config` on
each, then builds each distinct job's data and network (:func:`src.training.preflight.first_unbuildable`,
for a local launcher); the first bad value ends the command with one line naming the job, the key, the value and what is
allowed (exit 2), before any run directory or ``multirun.yaml`` is written. ``conf/train.yaml`` selects it
(``override hydra/sweeper: checked``); its settings are the basic sweeper's (``params``, ``max_batch_size``).
"""

from __future__ import annotations

import sys
from typing import Any

from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.override_parser.overrides_parser import OverridesParser


class CheckedSweeper(BasicSweeper):
    """See the module docstring."""

    def jobs(self, arguments: list[str]) -> list[list[str]]:
        """Every job's overrides, in launch order, as :meth:`sweep` will launch them."""
        assert self.hydra_context is not None
        params = [*self._parse_config(), *arguments]
        parser = OverridesParser.create(config_loader=self.hydra_context.config_loader)
        batches = self.split_arguments(parser.parse_overrides(params), None)
        return [list(job) for batch in batches for job in batch]

    def check(self, arguments: list[str]) -> None:
        """Compose and validate every job; the first error ends the command (one line, exit 2)."""
        from src.training.preflight import first_unbuildable  # torch: only when sweeping
        from src.training.validation import ConfigError, check_device, validate_config

        assert self.hydra_context is not None and self.config is not None
        n_jobs = self.config.hydra.launcher.get("n_jobs")
        if n_jobs is not None and (
            isinstance(n_jobs, bool) or not isinstance(n_jobs, int) or n_jobs == 0 or n_jobs < -1
        ):
            print(
                f"error: hydra.launcher.n_jobs={n_jobs!r} is invalid: the jobs (or packs) at a time, an integer >= 1 "
                "(-1: one per core); nothing was trained",
                file=sys.stderr,
            )
            raise SystemExit(2)
        local = "submitit" not in str(self.config.hydra.launcher.get("_target_", ""))
        jobs, configs = self.jobs(arguments), []
        for number, job in enumerate(jobs):
            config = self.hydra_context.config_loader.load_sweep_config(self.config, job)
            try:
                validate_config(config)
                if local:
                    check_device(config)  # a local launcher: the jobs run on this machine
            except ConfigError as error:
                refuse(str(error), number, job)
            configs.append(config)
        # what only a class can judge, built as the runs will (a cluster's jobs build where their data is)
        unbuildable = first_unbuildable(configs) if local else None
        if unbuildable is not None:
            number, message = unbuildable
            refuse(message, number, jobs[number])

    def sweep(self, arguments: list[str]) -> Any:
        self.check(arguments)
        return super().sweep(arguments)


def refuse(message: str, number: int, job: list[str]) -> None:
    """End the command: one line naming the job and what is wrong with it (exit 2)."""
    print(f"error: {message} (job #{number}: {' '.join(job)}); nothing was trained", file=sys.stderr)
    raise SystemExit(2) from None
