"""Per-run isolation: nothing a run sets leaks into the next run sharing its process.

A Hydra multirun with the basic launcher trains its jobs one after another in one process (as packed
runs and in-process sweeps will); each job's record must equal the record of the same config trained
alone in a fresh process, and the process-wide state a run touches must be as it was after the run.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import warnings

import numpy as np
import pytest
import torch

from src.run.records import RECORD_FILE
from src.training.single import train

from .conftest import run_train

FAST = ["dataset=digits", "epochs=1", "trainer.accelerator=cpu", "logger=csv"]
COMPARED = ("metrics", "curve", "lr", "norm_layers", "num_parameters", "batches", "config_hash")


def _outcome(run_dir) -> dict:
    record = json.loads((run_dir / RECORD_FILE).read_text())
    assert record["status"] == "completed", record.get("error")
    return {key: record[key] for key in COMPARED}


@pytest.mark.slow  # make test-all (idle 2-core CPU: 10-35 s)
def test_two_configs_in_one_process_match_each_config_run_alone(tmp_path):
    # gn with G = 8 (the group-wise norm's own settings, logging), then bn with another seed: one process
    swept = run_train(
        "-m", *FAST, "norm=gn,bn", "seed=3", "norm_groups=8", "hydra.sweep.dir=sweep", cwd=tmp_path, timeout=600
    )
    assert swept.returncode == 0, swept.stderr[-2000:]
    for norm in ("gn", "bn"):
        alone = run_train(
            *FAST, f"norm={norm}", "seed=3", "norm_groups=8", f"hydra.run.dir=alone_{norm}", cwd=tmp_path, timeout=600
        )
        assert alone.returncode == 0, alone.stderr[-2000:]
        (in_sweep_dir,) = (tmp_path / "sweep").glob(f"*norm={norm},*")
        in_sweep = _outcome(in_sweep_dir)
        assert in_sweep == _outcome(tmp_path / f"alone_{norm}"), norm


def _process_state() -> dict:
    return {
        "threads": torch.get_num_threads(),
        "python_rng": random.getstate(),
        "numpy_rng": np.random.get_state()[1].tolist(),
        "torch_rng": torch.get_rng_state().tolist(),
        "environ": dict(os.environ),
        "argv": list(sys.argv),
        "handlers": list(logging.getLogger().handlers),
        "filters": list(warnings.filters),
        "grad_enabled": torch.is_grad_enabled(),
    }


def test_a_run_leaves_the_process_as_it_found_it(compose_cfg, tmp_path):
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    before = _process_state()
    for index, overrides in enumerate(
        [("norm=gn", "seed=1", "cpu_threads=1"), ("norm=bn", "seed=2", "standardize_weights=true")]
    ):
        cfg = compose_cfg(*FAST[:-1], *overrides)
        record = train(cfg, tmp_path / f"run{index}", overrides=list(overrides))
        assert record["status"] == "completed"
        assert _process_state() == before, f"run {index} ({' '.join(overrides)}) changed the process"
