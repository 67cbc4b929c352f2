"""Studies as first-class configs: ``experiment=<study>`` (and ``+experiment=<study>``) composes exactly
what ``--config-dir sweeps --config-name <study>`` does (the same config hash and run directories), from
one study file.

A study's one source is ``conf/experiment/<study>.yaml`` (``# @package _global_``); ``sweeps/<study>.yaml``
only picks it (``override experiment: <study>``: conf/train.yaml's defaults hold ``experiment: null``).
The pinned hashes are those of the study files before they moved: a finished run of a study must keep
being recognized (skipped, not retrained).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from src.run.config_keys import computation_view, config_hash, register_resolvers, run_dirname
from src.studies import EXPERIMENTS, experiment_choice, studies

from .conftest import CONF, ROOT, run_train

SWEEPS = ROOT / "sweeps"
STUDIES = sorted(p.stem for p in EXPERIMENTS.glob("*.yaml"))
# config_hash of each study's default composition, as composed from the study files before this move;
# small_batch_cifar10 and norm_compare_cifar10 changed recipe on purpose (issue 29: reflection padding,
# dataset.augment=crop_flip_reflect; their old default composition's hash is recipe_pilot_stage3's)
PINNED = {
    "demo": "37a646698cb000f4",
    "ln_after_conv": "8b7d49a545bb6518",
    "norm_compare": "a05c2337b857dc40",
    "norm_compare_cifar10": "dff47cf1bb054cb1",
    "norm_compare_cifar10_32": "12af573f08e72d80",  # norm_compare_cifar10 at 32 epochs
    "recipe_pilot": "68d0c7922078b3c4",
    "small_batch": "a05c2337b857dc40",
    "recipe_pilot_stage3": "3dbf5fd7711c3721",
    "small_batch_cifar10": "dff47cf1bb054cb1",
    "small_batch_cifar10_cpu": "eff535db51024b2f",
    "small_batch_cifar10_gpu": "86eda8ef0e024ebf",
    "switchable": "b56f3613ea5886c7",
    "weight_norms": "b56f3613ea5886c7",
}


def _compose(config_dir: Path, name: str, overrides: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The resolved config less ``hydra``, and ``hydra`` (sweeper params, launcher, sweep dir)."""
    register_resolvers()
    with initialize_config_dir(config_dir=str(config_dir), version_base="1.3"):
        cfg = compose(name, overrides=overrides, return_hydra_config=True)
    hydra_cfg = OmegaConf.to_container(cfg.hydra, resolve=False)
    OmegaConf.set_struct(cfg, False)
    del cfg["hydra"]
    return OmegaConf.to_container(cfg, resolve=True), hydra_cfg


def both_ways(study: str, *overrides: str, choice: str = "experiment") -> tuple[tuple[dict, dict], tuple[dict, dict]]:
    """The study composed from its sweeps/ primary config and from conf/train.yaml with ``choice=<study>``
    as the command line gives it (``+experiment`` becomes ``experiment``: :func:`experiment_choice`)."""
    primary = _compose(SWEEPS, study, [f"hydra.searchpath=[file://{CONF}]", *overrides])
    command_line = experiment_choice(["src.train", f"{choice}={study}", *overrides])[1:]
    experiment = _compose(CONF, "train", command_line)
    return primary, experiment


def test_every_study_has_a_thin_sweeps_file_and_nothing_else():
    assert sorted(PINNED) == STUDIES
    thin = sorted(p.stem for p in SWEEPS.glob("*.yaml") if not p.name.endswith(".wandb.yaml"))
    assert thin == STUDIES
    for study in STUDIES:
        data = yaml.safe_load((SWEEPS / f"{study}.yaml").read_text(encoding="utf-8"))
        expected = {"defaults": ["train", {"override experiment": study}, "_self_"]}
        assert data == expected, f"sweeps/{study}.yaml is not thin"
        text = (EXPERIMENTS / f"{study}.yaml").read_text(encoding="utf-8")
        assert text.startswith("# @package _global_\n"), f"conf/experiment/{study}.yaml lacks the package header"
    assert set(studies()) == set(STUDIES)


@pytest.mark.parametrize("choice", ["experiment", "+experiment"])
@pytest.mark.parametrize("study", STUDIES)
def test_a_study_composes_the_same_both_ways(study, choice):
    (config, hydra_cfg), (config_exp, hydra_exp) = both_ways(study, choice=choice)
    assert computation_view(config_exp) == computation_view(config)
    assert config_hash(config_exp) == config_hash(config) == PINNED[study]
    assert config_exp == config  # steering keys too (report block, cpu_threads, compile)
    assert hydra_exp["sweeper"]["params"] == hydra_cfg["sweeper"]["params"]
    assert hydra_exp["launcher"] == hydra_cfg["launcher"]
    assert hydra_exp["sweep"] == hydra_cfg["sweep"] and config["study"] == study


def test_a_swept_job_lands_in_the_same_run_directory_with_the_same_hash():
    job = ["norm=gn", "batch=2", "seed=1", "epochs=16"]
    (config, _), (config_exp, _) = both_ways("small_batch_cifar10", *job)
    assert config_hash(config_exp) == config_hash(config)
    # the sweep directory's subdir: the task overrides less steering keys; +experiment=… is one of them
    name = run_dirname(["+experiment=small_batch_cifar10", *job])
    assert name == run_dirname(job) == "batch=2,epochs=16,norm=gn,seed=1"
    assert run_dirname(["experiment=demo", "norm=bn"]) == "norm=bn"


def test_experiment_is_a_choice_in_the_defaults_list():
    """``experiment=<name>`` without ``+`` (as in lightning-hydra-template); the ``+`` form still works."""
    defaults = yaml.safe_load((CONF / "train.yaml").read_text(encoding="utf-8"))["defaults"]
    groups = [d for d in defaults if not (isinstance(d, dict) and any(str(k).startswith("override ") for k in d))]
    assert {"experiment": None} in groups and groups[-1] == {"experiment": None}  # after debug: as + appended
    argv = ["src/train.py", "-m", "+experiment=demo", "norm=gn", "+foo=1", "hydra.job.name=x"]
    assert experiment_choice(argv) == ["src/train.py", "-m", "experiment=demo", "norm=gn", "+foo=1", "hydra.job.name=x"]


@pytest.mark.parametrize("choice", ["experiment", "+experiment"])
def test_the_command_line_takes_a_study_with_or_without_plus(tmp_path, choice):
    result = run_train(f"{choice}=demo", "--cfg", "job", cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "study: demo" in result.stdout and "Does BN degrade at batch 2" in result.stdout
