"""docs/extending.md, end to end: a norm, a model, a dataset and a claim kind, each added from a
directory outside the repository (its modules on PYTHONPATH, its config files on ``hydra.searchpath``),
touching no file of normlab."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from src.run.records import RECORD_FILE

from .conftest import ROOT, run_train
from .test_report import grid, write_records

MYNORM = '''
import torch
from torch import nn


class MyNorm(nn.Module):
    """Each sample over (C, H, W), as LN, with a learned per-channel scale and no shift."""

    def __init__(self, num_channels, eps=1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(1, num_channels, 1, 1))

    def forward(self, x):
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        var = x.var(dim=(1, 2, 3), keepdim=True, unbiased=False)
        return self.weight * (x - mean) / torch.sqrt(var + self.eps)
'''
MYNORM_YAML = """
_target_: src.norms.Normalization
name: mynorm
batch_dependent: false
info: {label: My Norm, family: group, order: 20, color: "#336699", shift: false}
layer:
  _target_: mynorm.MyNorm
  _partial_: true
  eps: 1.0e-5
"""
MYMODEL = """
from torch import nn


class MyModel(nn.Module):
    def __init__(self, input_shape, num_classes, norm, width=8):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False), norm(width), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(width, num_classes),
        )

    def forward(self, x):
        return self.body(x)
"""
MYMODEL_YAML = """
_target_: mymodel.MyModel
width: 8
"""
MYDATA = """
import numpy as np

from src.data import ArrayDataModule, ImageArrays


class MyData(ArrayDataModule):
    def __init__(self, size=300, **kwargs):
        super().__init__(**kwargs)
        self.size = size

    def load_arrays(self):
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (self.size, 8, 8, 3), dtype=np.uint8)
        labels = rng.integers(0, 3, self.size)
        return ImageArrays(images[100:], labels[100:], images[:100], labels[:100], ["a", "b", "c"])
"""
MYDATA_YAML = """
_target_: mydata.MyData
name: mydata
size: 300
batch_size: ${batch}
val_size: 50
"""
MYKINDS = '''
from src.report.kinds import ClaimKind, Test, Tests, fail


class Interaction(ClaimKind):
    """norms[0] loses at least `at_least` points more than norms[1] going from batches[1] to batches[0]."""

    keys = frozenset({"norms", "batches", "at_least"})

    def check(self, key, claim):
        if not isinstance(claim.get("norms"), list) or len(claim["norms"]) != 2:
            fail(f"{key}.norms", claim.get("norms"), "must be a list of two norms")
        if not isinstance(claim.get("batches"), list) or len(claim["batches"]) != 2:
            fail(f"{key}.batches", claim.get("batches"), "must be a list of two batch sizes [small, large]")
        if "at_least" not in claim:
            fail(f"{key}.at_least", None, "needs at_least: the smallest difference of differences")

    def columns(self, claim):
        return ["norm", "batch"]

    def build(self, claim, runs):
        (x, y), (small, large) = claim["norms"], claim["batches"]
        weights = {
            self.cell(claim, norm=x, batch=small): 1.0,
            self.cell(claim, norm=x, batch=large): -1.0,
            self.cell(claim, norm=y, batch=small): -1.0,
            self.cell(claim, norm=y, batch=large): 1.0,
        }
        label = f"({x}@{small} − {x}@{large}) − ({y}@{small} − {y}@{large})"
        bound = float(claim["at_least"])
        return Tests(sizes=[Test(label, "at_least", bound, weights)], statement=f"{label} ≥ {bound:g}")
'''


def add(root: Path, files: dict[str, str]) -> Path:
    """Writes ``files`` (relative path → text) under ``root``; returns ``root``."""
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip())
    return root


def train(ext: Path, *overrides: str) -> dict:
    """One run of ``python -m src.train`` with ``ext/`` on PYTHONPATH and ``ext/conf`` on Hydra's search
    path, at the cheapest settings; returns its record."""
    run_dir = ext / "run"
    result = run_train(
        *overrides,
        f"hydra.searchpath=[file://{ext / 'conf'}]",
        f"hydra.run.dir={run_dir}",
        "epochs=1",
        "logger=none",
        "trainer.accelerator=cpu",
        cwd=ext,
        env={"PYTHONPATH": os.pathsep.join([str(ROOT), str(ext)])},
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((run_dir / RECORD_FILE).read_text())


TINY = ("dataset.train_size=200", "model.widths=[8,16]")  # the embedded default dataset, a narrow small_cnn


def test_a_norm_from_outside_the_repository_trains(tmp_path):
    ext = add(tmp_path, {"mynorm.py": MYNORM, "conf/norm/mynorm.yaml": MYNORM_YAML})
    record = train(ext, "norm=mynorm", *TINY)
    assert record["status"] == "completed" and record["norm"] == "mynorm"
    assert record["dataset"] == "cifar10_small" and record["data"]["splits"]["train"] == 200
    assert record["norm_info"]["label"] == "My Norm" and record["norm_info"]["batch_dependent"] is False
    assert record["config"]["norm"]["layer"]["_target_"] == "mynorm.MyNorm"
    assert 0 <= record["metrics"]["test_error"] <= 100


def test_a_model_from_outside_the_repository_trains(tmp_path):
    ext = add(tmp_path, {"mymodel.py": MYMODEL, "conf/model/mymodel.yaml": MYMODEL_YAML})
    record = train(ext, "model=mymodel", "norm=gn", "dataset.train_size=200")
    assert record["status"] == "completed" and record["model"] == "mymodel" and record["norm"] == "gn"
    assert record["config"]["model"] == {"_target_": "mymodel.MyModel", "width": 8}


def test_a_dataset_from_outside_the_repository_trains(tmp_path):
    ext = add(tmp_path, {"mydata.py": MYDATA, "conf/dataset/mydata.yaml": MYDATA_YAML})
    record = train(ext, "dataset=mydata", "batch=16", "model.widths=[8,16]")
    assert record["status"] == "completed" and record["dataset"] == "mydata"
    assert record["data"]["splits"] == {"train": 150, "val": 50, "test": 100}


def _report(ext: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "src.report", *args],
        cwd=ext,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ext)])},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_claim_kind_from_outside_the_repository_decides_a_claim(tmp_path):
    claim = {"id": "bn_suffers_more", "kind": "mykinds.Interaction", "norms": ["bn", "gn"], "batches": [2, 32]}
    study = {"report": {"budget": "fixed", "claims": [{**claim, "at_least": 2.0}]}}
    ext = add(tmp_path, {"mykinds.py": MYKINDS, "study.yaml": json.dumps(study)})  # JSON is YAML
    noise = [-0.2, 0.0, 0.2]
    errors = {("bn", 2): 16.0, ("bn", 32): 10.0, ("gn", 2): 11.0, ("gn", 32): 10.5}  # 6 − 0.5 = 5.5 ≥ 2
    write_records(ext / "m", grid("ext", {key: [value + e for e in noise] for key, value in errors.items()}))
    result = _report(ext, str(ext / "m"), "--claims", str(ext / "study.yaml"), "--out", str(ext / "out"))
    assert result.returncode == 0, result.stderr[-3000:]
    [row] = pd.read_csv(ext / "out" / "ext" / "claims.csv").to_dict("records")
    assert (row["id"], row["kind"], row["verdict"]) == ("bn_suffers_more", "mykinds.Interaction", "reproduced")
    assert row["effect"] == pytest.approx(5.5) and row["pooled_df"] == 8
    assert "(bn@2 − bn@32) − (gn@2 − gn@32) ≥ 2" in (ext / "out" / "ext" / "claims.md").read_text()

    # its own spec check, and a kind that cannot be imported, fail with one line naming the key
    for bad, message in (
        (claim, "report.claims[0] (bn_suffers_more).at_least = None: needs at_least"),
        ({**claim, "kind": "mykinds.Nope"}, "report.claims[0] (bn_suffers_more).kind = 'mykinds.Nope': cannot import"),
    ):
        (ext / "bad.yaml").write_text(json.dumps({"report": {"claims": [bad]}}))
        result = _report(ext, str(ext / "m"), "--claims", str(ext / "bad.yaml"), "--out", str(ext / "bad"))
        errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
        assert result.returncode == 2 and len(errors) == 1 and message in errors[0], result.stderr[-2000:]
