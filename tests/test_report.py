"""The report: run records in, tables, claim verdicts, plots and the results index out.

Most tests build synthetic ``result.json`` records (fast, exact numbers); one runs a real tiny multirun.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from scipy import stats

from src.report.__main__ import main as report_main
from src.report.claims import INCONCLUSIVE, NO_DATA, NOT_REPRODUCED, REPRODUCED, claims_of, evaluate_claims
from src.report.commands import sweep_command, sweep_commands
from src.report.load import load_run_set, mixture_weights
from src.report.spec import SpecError
from src.report.stats import diff_ci, mean_ci
from src.run.records import RECORD_FILE

from .conftest import CONF, ROOT, run_train

SWEEPS = ROOT / "sweeps"
STUDIES = sorted(p.stem for p in SWEEPS.glob("*.yaml") if not p.name.endswith(".wandb.yaml"))


def make_record(
    study: str,
    norm: str,
    batch: int,
    seed: int,
    test_error: float,
    *,
    val_error: float | None = None,
    dataset: str = "fashion_mnist_small",
    model: str = "small_cnn",
    report: dict[str, Any] | None = None,
    norm_state: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A run record shaped like the one src.train writes."""
    config: dict[str, Any] = {"study": study, "batch": batch, "seed": seed, "epochs": 2, "norm": {"name": norm}}
    if report is not None:
        config["report"] = report
    record = {
        "status": "completed",
        "study": study,
        "overrides": [f"norm={norm}", f"batch={batch}", f"seed={seed}"],
        "norm": norm,
        "batch": batch,
        "dataset": dataset,
        "model": model,
        "seed": seed,
        "epochs": 2,
        "config": config,
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": f"2026-01-01T00:{seed:02d}:00+00:00",
        "lr": 0.1 * batch / 32,
        "metrics": {
            "val_error": test_error + 0.5 if val_error is None else val_error,
            "best_val_error": test_error,
            "test_error": test_error,
            "train_loss": 0.3,
        },
        "timing": {"fit_seconds": 10.0, "train_seconds": 9.0, "train_steps": 100, "steps_per_second": 10.0 + seed},
        "norm_state": norm_state or {},
        "environment": {"device": "cpu", "git_commit": "abc123", "machine": {"hostname": "testhost"}},
    }
    record.update(extra)
    return record


def write_records(root: Path, records: list[dict[str, Any]]) -> Path:
    for record in records:
        name = ",".join(sorted(record["overrides"])) + f",{record['dataset']}"
        path = root / record["study"] / name / RECORD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    return root


def grid(study: str, errors: dict[tuple[str, int], list[float]], **kwargs: Any) -> list[dict[str, Any]]:
    """Records for {(norm, batch): [error per seed]}."""
    return [
        make_record(study, norm, batch, seed, error, **kwargs)
        for (norm, batch), values in errors.items()
        for seed, error in enumerate(values)
    ]


def runs_of(records: list[dict[str, Any]], tmp_path: Path) -> pd.DataFrame:
    return load_run_set([write_records(tmp_path / "runs", records)]).runs


def verdicts(runs: pd.DataFrame, *claims: dict[str, Any]) -> list[str]:
    """Each claim's verdict judged alone (a family of one: no Holm correction across claims)."""
    return [evaluate_claims(runs, {"budget": "fixed", "claims": [claim]})[0].verdict for claim in claims]


# --------------------------------------------------------------------------- statistics


def test_mean_and_difference_intervals_match_textbook_formulas():
    x, y = [10.0, 11.0, 12.5], [7.0, 7.5, 9.0, 8.0]
    estimate = mean_ci(x)
    half = stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / math.sqrt(3)
    assert estimate.value == pytest.approx(np.mean(x))
    assert (estimate.low, estimate.high) == pytest.approx((np.mean(x) - half, np.mean(x) + half))
    welch = stats.ttest_ind(x, y, equal_var=False).confidence_interval(0.95)
    difference = diff_ci(x, y)
    assert difference.value == pytest.approx(np.mean(x) - np.mean(y))
    assert (difference.low, difference.high) == pytest.approx((welch.low, welch.high))
    single = diff_ci([1.0], [2.0, 3.0])
    assert single.value == pytest.approx(-1.5) and not single.defined
    assert math.isnan(diff_ci([], [1.0, 2.0]).value)


# --------------------------------------------------------------------------- tables


def test_summary_cell_recomputed_by_hand_from_runs_csv(tmp_path):
    errors = {("bn", 2): [30.0, 33.0, 31.5], ("bn", 32): [20.0, 21.0, 20.5], ("gn", 2): [22.0, 22.4, 23.1]}
    records = grid("handcheck", errors)
    records += grid("handcheck", {("gn", 32): [21.9]})
    write_records(tmp_path / "multirun", records)
    assert report_main([str(tmp_path / "multirun"), "--out", str(tmp_path / "results")]) == 0
    out = tmp_path / "results" / "handcheck"
    runs = pd.read_csv(out / "runs.csv")
    summary = pd.read_csv(out / "summary.csv")
    assert len(runs) == 10 and len(summary) == 4

    cell = runs[(runs.norm == "bn") & (runs.batch == 2)]
    row = summary[(summary.norm == "bn") & (summary.batch == 2)].iloc[0]
    n, mean, sd = len(cell), cell.test_error.mean(), cell.test_error.std(ddof=1)
    half = stats.t.ppf(0.975, n - 1) * sd / math.sqrt(n)
    assert row.n == n == 3
    assert row.test_error_mean == pytest.approx(mean)
    assert row.test_error_std == pytest.approx(sd)
    assert (row.test_error_ci95_low, row.test_error_ci95_high) == pytest.approx((mean - half, mean + half))
    assert row.test_error_ci95_half == pytest.approx(half)
    val_half = stats.t.ppf(0.975, n - 1) * cell.val_error.std(ddof=1) / math.sqrt(n)
    assert row.val_error_mean == pytest.approx(cell.val_error.mean())
    assert row.val_error_ci95_high - row.val_error_mean == pytest.approx(val_half)
    assert row.steps_per_second_mean == pytest.approx(cell.steps_per_second.mean())
    single = summary[(summary.norm == "gn") & (summary.batch == 32)].iloc[0]
    assert single.n == 1 and math.isnan(single.test_error_ci95_low) and math.isnan(single.test_error_std)

    markdown = (out / "summary.md").read_text()
    assert f"| bn | {mean:.2f} ± {sd:.2f} (3) | 20.50 ± 0.50 (3) |" in markdown
    assert "| gn | 22.50 ± 0.56 (3) | 21.90 (1) |" in markdown
    assert "| gn − bn | -9.00 | +1.40 |" in markdown  # the GN paper's Table 2 layout, with its Δ row


def test_norm_state_weights_are_read_in_the_shape_switchable_norm_writes():
    state = {
        "layer1": {"mean_weights": {"in": 0.2, "ln": 0.3, "bn": 0.5}, "var_weights": {"in": 0.1, "ln": 0.1, "bn": 0.8}},
        "layer2": {"mean_weights": {"in": 0.4, "ln": 0.3, "bn": 0.3}, "var_weights": {"in": 0.3, "ln": 0.3, "bn": 0.4}},
        "layer3": {"unrelated": 1.0, "mean_weights": {"bn": True}},
    }
    weights = mixture_weights(state)
    assert weights["state_weight_bn"] == pytest.approx(np.mean([0.5, 0.8, 0.3, 0.4]))
    assert weights["state_mean_weight_bn"] == pytest.approx(np.mean([0.5, 0.3]))
    assert weights["state_var_weight_bn"] == pytest.approx(np.mean([0.8, 0.4]))
    assert weights["state_weight_in"] == pytest.approx(np.mean([0.2, 0.1, 0.4, 0.3]))
    assert mixture_weights(None) == {} and mixture_weights({"x": [1, 2]}) == {} and mixture_weights("junk") == {}


def test_mixture_weights_read_what_switchable_norm_records():
    import torch

    from src.norms import SwitchableNorm2d

    layer = SwitchableNorm2d(4)
    with torch.no_grad():
        layer.mean_logits.copy_(torch.tensor([0.0, 0.0, 2.0]))
    weights = mixture_weights({"features.0": layer.record_state()})
    expected = torch.softmax(torch.tensor([0.0, 0.0, 2.0]), 0)[2].item()
    assert weights["state_mean_weight_bn"] == pytest.approx(expected) and weights[
        "state_var_weight_bn"
    ] == pytest.approx(1 / 3)


# --------------------------------------------------------------------------- claims

DEGRADES = {"kind": "difference", "norm": "bn", "batches": [2, 32], "at_least": 2.0}


def test_difference_claim_verdicts(tmp_path):
    clear = runs_of(grid("s", {("bn", 2): [30.0, 31.0, 30.5], ("bn", 32): [20.0, 20.5, 21.0]}), tmp_path / "a")
    assert verdicts(clear, DEGRADES) == [REPRODUCED]
    none = runs_of(grid("s", {("bn", 2): [20.1, 20.3, 20.2], ("bn", 32): [20.0, 20.2, 20.1]}), tmp_path / "b")
    assert verdicts(none, DEGRADES) == [NOT_REPRODUCED]
    noisy = runs_of(grid("s", {("bn", 2): [18.0, 26.0, 22.0], ("bn", 32): [20.0, 20.5, 19.5]}), tmp_path / "c")
    assert verdicts(noisy, DEGRADES) == [INCONCLUSIVE]
    single = runs_of(grid("s", {("bn", 2): [40.0], ("bn", 32): [20.0]}), tmp_path / "d")
    [result] = evaluate_claims(single, {"budget": "fixed", "claims": [DEGRADES]})
    assert result.verdict == INCONCLUSIVE and not result.estimate.defined
    assert any("single run" in note for note in result.notes) and any("agrees" in note for note in result.notes)
    missing = runs_of(grid("s", {("bn", 2): [30.0, 31.0]}), tmp_path / "e")
    assert verdicts(missing, DEGRADES) == [NO_DATA]


def test_flat_less_greater_and_order_claims(tmp_path):
    errors = {
        ("bn", 2): [30.0, 30.4, 30.2],
        ("bn", 32): [20.0, 20.4, 20.2],
        ("gn", 2): [21.0, 21.2, 21.1],
        ("gn", 8): [21.1, 21.3, 20.9],
        ("gn", 32): [21.0, 21.1, 21.2],
        ("ln", 32): [23.0, 23.3, 23.1],
        ("in", 32): [26.0, 26.2, 25.9],
    }
    runs = runs_of(grid("s", errors), tmp_path)
    flat = {"kind": "flat", "norm": "gn", "at_most": 1.0}
    bn_flat = {"kind": "flat", "norm": "bn", "batches": [2, 32], "at_most": 1.0}
    less = {"kind": "less", "norms": ["gn", "bn"], "batch": 2}
    greater = {"kind": "greater", "norms": ["gn", "bn"], "batch": 2}
    order = {"kind": "order", "batch": 32, "order": "bn ≲ gn < ln < in", "tolerance": 1.5}
    wrong_order = {"kind": "order", "batch": 32, "order": "in < ln"}
    assert verdicts(runs, flat, bn_flat, less, greater, order, wrong_order) == [
        REPRODUCED,
        NOT_REPRODUCED,
        REPRODUCED,
        NOT_REPRODUCED,
        REPRODUCED,
        NOT_REPRODUCED,
    ]
    [result] = evaluate_claims(runs, {"budget": "fixed", "claims": [order]})
    assert [c.verdict for c in result.sizes] == [REPRODUCED] * 3
    assert [c.test for c in result.sizes] == ["within", "direction", "direction"]  # ≲ is an equivalence test
    assert result.sizes[0].claim == "within ±1.5"
    strict = {"kind": "order", "batch": 32, "order": "gn < bn"}  # gn is worse by ~0.9: contradicted
    assert verdicts(runs, strict) == [NOT_REPRODUCED]
    [reversed_] = evaluate_claims(runs, {"budget": "fixed", "claims": [strict]})
    assert reversed_.sizes[0].verdict == "reversed"


def test_switchable_weight_claim_reads_norm_state(tmp_path):
    def state(bn: float) -> dict[str, Any]:
        rest = (1 - bn) / 2
        return {"features.0.1": {"mean_weights": {"in": rest, "ln": rest, "bn": bn}, "var_weights": {"bn": bn}}}

    records = [
        make_record("sw", "switchable", batch, seed, 20.0, norm_state=state(bn))
        for batch, values in ((2, [0.10, 0.15, 0.12]), (32, [0.50, 0.55, 0.60]))
        for seed, bn in enumerate(values)
    ]
    runs = runs_of(records, tmp_path)
    claim = {
        "kind": "less",
        "metric": "state_weight_bn",
        "a": {"norm": "switchable", "batch": 2},
        "b": {"norm": "switchable", "batch": 32},
    }
    assert verdicts(runs, claim) == [REPRODUCED]
    no_state = runs_of(grid("sw", {("switchable", 2): [20.0, 21.0], ("switchable", 32): [20.0, 21.0]}), tmp_path / "x")
    [result] = evaluate_claims(no_state, {"budget": "fixed", "claims": [claim]})
    assert result.verdict == NO_DATA and any("state_weight_bn" in note for note in result.notes)


def test_a_bad_report_block_fails_with_one_line_naming_key_value_and_what_is_allowed(tmp_path):
    runs = runs_of(grid("s", {("bn", 2): [30.0, 31.0], ("bn", 32): [20.0, 21.0]}), tmp_path)
    bad = {
        "report.claims[0].kind = 'sideways': must be one of": {"kind": "sideways"},
        "report.claims[0].batches = None: must be a list of two integer batch sizes": {
            "kind": "difference",
            "norm": "bn",
            "at_least": 1,
        },
        "report.claims[0].order = 'bn': must look like": {"kind": "order", "batch": 32, "order": "bn"},
        "report.claims[0] (x).within = -1: must be a number > 0": {
            "id": "x",
            "kind": "equivalent",
            "norms": ["bn", "gn"],
            "batch": 32,
            "within": -1,
        },
        "report.claims[0].published[0].conditions = None: a published number must state its conditions": {
            **DEGRADES,
            "published": [{"value": 1.0, "source": "somewhere"}],
        },
        "report.claims[0].at_leats = 2: unknown key; allowed:": {**DEGRADES, "at_leats": 2},
    }
    for message, claim in bad.items():
        with pytest.raises(SpecError) as error:
            evaluate_claims(runs, {"budget": "fixed", "claims": [claim]})
        assert str(error.value).startswith(message) and "\n" not in str(error.value), str(error.value)
    with pytest.raises(SpecError, match=r"report.convergence.max_train_loss_ratio = 0.5: must be a number ≥ 1"):
        evaluate_claims(runs, {"budget": "fixed", "claims": [DEGRADES], "convergence": {"max_train_loss_ratio": 0.5}})

    write_records(
        tmp_path / "m",
        grid("bad", {("bn", 2): [30.0, 31.0]}, report={"budget": "fixed", "claims": [{"kind": "sideways"}]}),
    )
    process = subprocess.run(
        [sys.executable, "-m", "src.report", str(tmp_path / "m"), "--out", str(tmp_path / "out")],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
    )
    assert process.returncode == 2 and not (tmp_path / "out" / "bad").exists()
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "report.claims[0].kind = 'sideways'" in errors[0]


@pytest.mark.parametrize("study", STUDIES)
def test_every_study_file_composes_and_its_claims_evaluate(study, tmp_path):
    """Each sweeps/<study>.yaml is a Hydra primary config whose swept norms exist and whose claims parse."""
    with initialize_config_dir(config_dir=str(SWEEPS), version_base="1.3"):
        overrides = [f"hydra.searchpath=[file://{CONF}]"]
        cfg = compose(study, overrides=overrides, return_hydra_config=True)
        params = {key: str(value).split(",") for key, value in cfg.hydra.sweeper.params.items()}
        for norm in params.get("norm", []):
            assert compose(study, overrides=[*overrides, f"norm={norm}"]).norm.name == norm
    # a study states claims, or (a recipe pilot) the factors whose recipes its report ranks
    assert cfg.study == study and (cfg.report.claims or cfg.report.get("factors")), f"{study} states no claims"
    spec = OmegaConf.to_container(cfg.report, resolve=True)  # the study's own report block or an inherited one
    for claim in spec["claims"]:
        assert claim.get("published") is not None, f"{study}: claim {claim.get('id')} carries no published number"
    batches = [int(b) for b in params.get("batch", [cfg.batch])]
    seeds = [int(s) for s in params.get("seed", [0, 1])]
    rng = np.random.default_rng(0)
    # the columns a claim's cells name beyond norm and batch (where: {epochs: 16, standardize_weights: true}):
    # synthetic runs cover every combination of their values
    named: dict[str, set] = {}
    for claim in claims_of(spec):  # with the study's report.where under each claim's own
        for cell in [claim.get("where") or {}, *(claim.get("cells") or []), claim.get("a") or {}, claim.get("b") or {}]:
            for column, value in cell.items():
                if column not in ("norm", "batch"):
                    named.setdefault(column, set()).add(value)
    arms = [dict(zip(named, values, strict=True)) for values in itertools.product(*named.values())]
    records = []
    for arm in arms:
        for norm in params["norm"]:
            for batch in batches:
                for seed in seeds if len(seeds) > 1 else [0, 1]:
                    record = make_record(
                        study,
                        norm,
                        batch,
                        seed,
                        float(rng.uniform(10, 30)),
                        norm_state={"l": {"mean_weights": {"bn": float(rng.uniform())}}},
                    )
                    for column, value in arm.items():
                        record["config"][column] = value
                        record["overrides"].append(f"{column}={value}")
                        if column in record:
                            record[column] = value
                    records.append(record)
    for result in evaluate_claims(runs_of(records, tmp_path), spec):
        assert result.verdict != NO_DATA, (study, result.id, result.notes)
        assert not any("could not be evaluated" in note for note in result.notes), (study, result.id, result.notes)


# --------------------------------------------------------------------------- runs not counted


def test_corrupt_partial_failed_and_duplicate_runs_are_listed_not_counted(tmp_path):
    root = tmp_path / "multirun"
    good = grid("mixed", {("bn", 2): [30.0, 31.0], ("gn", 2): [22.0, 22.5]})
    write_records(root, good)
    study = root / "mixed"
    (study / "corrupt").mkdir()
    (study / "corrupt" / RECORD_FILE).write_text('{"status": "completed", "metrics": {')
    (study / "a_list").mkdir()
    (study / "a_list" / RECORD_FILE).write_text("[1, 2]")
    failed = make_record("mixed", "bn", 8, 0, 0.0, status="failed", error="ValueError: boom\ntraceback")
    running = make_record("mixed", "bn", 16, 0, 0.0, status="running")
    diverged = make_record("mixed", "bn", 2, 5, 0.0, status="diverged", error="loss is nan at step 3")
    partial = make_record("mixed", "gn", 16, 0, 0.0)
    partial["metrics"] = {"val_error": 3.0}
    for name, record in (("failed", failed), ("running", running), ("partial", partial), ("diverged", diverged)):
        (study / name).mkdir()
        (study / name / RECORD_FILE).write_text(json.dumps(record))
    (study / "interrupted" / ".hydra").mkdir(parents=True)
    copy = tmp_path / "copy" / "mixed" / "again"
    copy.mkdir(parents=True)
    (copy / RECORD_FILE).write_text(json.dumps(good[0]))

    out = tmp_path / "results"
    assert report_main([str(root), str(tmp_path / "copy"), str(root), "--out", str(out)]) == 0
    runs = pd.read_csv(out / "mixed" / "runs.csv")
    assert len(runs) == 4 and set(runs.batch) == {2}
    summary = (out / "mixed" / "summary.md").read_text()
    section = summary.split("## Runs not counted", 1)[1]
    expected = {
        "corrupt": "unreadable record",
        "a_list": "not a JSON object",
        "failed": "status 'failed': ValueError: boom",
        "running": "status 'running'",
        "diverged": "status 'diverged' (the loss became non-finite): loss is nan at step 3",
        "partial": "no finite metrics.test_error",
        "interrupted": "no result.json",
        "again": "duplicate of",
    }
    for name, reason in expected.items():
        line = next((line for line in section.splitlines() if f"/{name}" in line), None)
        assert line is not None and reason in line, (name, section)
    assert "traceback" not in section
    assert "1 diverged run(s) are not in the tables (bn@2 ×1)" in summary
    assert "## Runs not counted" in (out / "mixed" / "claims.md").read_text()


def test_a_repeat_of_the_same_computation_is_not_another_seed(tmp_path):
    """``-m norm=bn`` and later ``-m norm=bn seed=0`` into one study: two run directories, one computation
    (the same config hash). Counting both would double n and narrow every interval; the second is listed as
    a duplicate. A record of another hash with the same overrides (another lr) is its own run."""
    from src.run.config_keys import config_hash

    first = make_record("rep", "bn", 32, 0, 30.0)
    first["overrides"] = ["norm=bn", "batch=32"]
    again = make_record("rep", "bn", 32, 0, 31.0)
    other_lr = make_record("rep", "bn", 32, 1, 29.0)
    other_lr["config"]["optim"] = {"base_lr": 0.05}
    for record in (first, again, other_lr):
        record["config_hash"] = config_hash(record["config"])
    assert first["config_hash"] == again["config_hash"] != other_lr["config_hash"]
    write_records(tmp_path / "m", [first, again, other_lr])
    out = tmp_path / "out"
    assert report_main([str(tmp_path / "m" / "rep"), "--out", str(out)]) == 0
    runs = pd.read_csv(out / "rep" / "runs.csv")
    assert len(runs) == 2 and sorted(runs.seed) == [0, 1]
    [reason] = pd.read_csv(out / "rep" / "not_counted.csv").reason.tolist()
    assert reason.startswith("duplicate of") and f"config hash {first['config_hash']}" in reason
    assert "not another seed" in reason


def test_runs_of_another_setting_get_their_own_table(tmp_path):
    """Two runs of bn@32 that differ in optim.base_lr, a key no claim names: one table per setting (the
    docs: tables never pool runs of different settings), not one mean ± SD over both."""
    from src.run.config_keys import config_hash

    records = []
    for seed, lr, error in ((0, 0.1, 30.0), (1, 0.1, 31.0), (0, 0.05, 20.0), (1, 0.05, 21.0)):
        record = make_record("lrs", "bn", 32, seed, error)
        record["config"]["optim"] = {"base_lr": lr}
        record["overrides"].append(f"optim.base_lr={lr}")
        record["config_hash"] = config_hash(record["config"])
        records.append(record)
    write_records(tmp_path / "m", records)
    assert report_main([str(tmp_path / "m" / "lrs"), "--out", str(tmp_path / "out")]) == 0
    summary = pd.read_csv(tmp_path / "out" / "lrs" / "summary.csv")
    assert sorted(summary["n"]) == [2, 2] and sorted(summary["test_error_mean"]) == [20.5, 30.5]
    assert sorted(summary["slice"]) == ["small_cnn · optim.base_lr=0.05", "small_cnn · optim.base_lr=0.1"]
    assert "pooled in one cell" not in (tmp_path / "out" / "lrs" / "summary.md").read_text()


def test_no_completed_runs_is_an_error_exit_that_writes_nothing(tmp_path):
    (tmp_path / "m" / "x").mkdir(parents=True)
    (tmp_path / "m" / "x" / RECORD_FILE).write_text("not json")
    assert report_main([str(tmp_path / "m"), "--out", str(tmp_path / "results")]) == 1
    assert not (tmp_path / "results").exists()


# --------------------------------------------------------------------------- outputs


SPEC = {
    "title": "Does BN degrade?",
    "budget": "fixed",
    "bar_batch": 2,
    "references": [
        {
            "source": "GN paper Table 2",
            "batches": [32, 16, 8, 4, 2],
            "rows": {"bn": [23.6, 23.7, 24.8, 27.3, 34.7], "gn": [24.1, 24.2, 24.0, 24.2, 24.1]},
        }
    ],
    "claims": [
        {
            **DEGRADES,
            "id": "bn_small_batch",
            "claim": "BN degrades",
            "published": [{"value": 11.1, "source": "GN", "conditions": "ImageNet"}],
        },
        {"id": "gn_flat", "claim": "GN is flat", "kind": "flat", "norm": "gn", "at_most": 1.0},
    ],
}


def test_report_writes_every_file_with_provenance_and_indexes_studies(tmp_path):
    errors = {("bn", 2): [30.0, 31.0, 30.5], ("bn", 32): [20.0, 20.5, 21.0], ("gn", 2): [21.0, 21.5, 21.2]}
    errors[("gn", 32)] = [21.0, 21.4, 20.9]
    write_records(tmp_path / "m", grid("alpha", errors, report=SPEC))
    write_records(tmp_path / "m2", grid("beta", {("ln", 32): [25.0, 26.0], ("bn", 32): [20.0, 21.0]}))
    out = tmp_path / "results"
    assert report_main([str(tmp_path / "m"), "--out", str(out)]) == 0
    assert report_main([str(tmp_path / "m2"), "--out", str(out)]) == 0

    files = {p.name for p in (out / "alpha").iterdir()}
    assert {"runs.csv", "summary.csv", "summary.md", "claims.md", "error_vs_batch.png", "error_by_norm.png"} <= files
    for png in ("error_vs_batch.png", "error_by_norm.png"):
        assert (out / "alpha" / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (out / "alpha" / png.replace(".png", ".svg")).read_bytes().startswith(b"<?xml")
    assert not list(out.rglob("*.tmp"))
    for markdown in ("summary.md", "claims.md"):
        text = (out / "alpha" / markdown).read_text()
        for field in ("command: `python -m src.report", "commit: runs abc123", "testhost", "runs finished"):
            assert field in text, (markdown, field)
    summary = (out / "alpha" / "summary.md").read_text()
    assert "Published: GN paper Table 2" in summary and "| bn | 34.7 | 27.3 | 24.8 | 23.7 | 23.6 |" in summary
    assert "![test error vs batch size](error_vs_batch.png)" in summary
    claims = (out / "alpha" / "claims.md").read_text()
    assert "✅ reproduced" in claims and "+11.1 (GN; ImageNet)" in claims and "+10.00 [" in claims
    table = pd.read_csv(out / "alpha" / "claims.csv")
    assert list(table.verdict) == [REPRODUCED, REPRODUCED]
    assert "claims and references: the run records" in claims

    beta = (out / "beta" / "summary.md").read_text()
    assert "error_vs_batch.png" not in beta  # one batch size: no curve to draw
    assert (out / "beta" / "error_by_norm.png").exists()
    index = (out / "README.md").read_text()
    assert "[alpha](alpha/summary.md)" in index and "[beta](beta/summary.md)" in index
    assert "[2 reproduced](alpha/claims.md)" in index and "Does BN degrade?" in index


def test_claims_come_from_a_study_file_when_the_records_have_none(tmp_path):
    write_records(tmp_path / "m", grid("gamma", {("bn", 2): [30.0, 31.0], ("bn", 32): [20.0, 20.5]}))
    study_file = tmp_path / "gamma.yaml"
    study_file.write_text(yaml.safe_dump({"defaults": ["train"], "report": {"budget": "fixed", "claims": [DEGRADES]}}))
    out = tmp_path / "results"
    assert report_main([str(tmp_path / "m"), "--out", str(out), "--claims", str(study_file)]) == 0
    claims = (out / "gamma" / "claims.md").read_text()
    assert "(--claims)" in claims and "reproduced" in claims
    assert json.loads((out / "gamma" / "meta.json").read_text())["claims_from"] == str(study_file)


def test_a_results_folder_rebuilds_with_the_claims_file_of_its_last_report(tmp_path):
    """The records carry the claims they were run with; a report given --claims judges others, and its
    meta.json names that file, so rebuilding the committed folder without --claims judges the same."""
    records = grid(
        "delta", {("bn", 2): [30.0, 31.0], ("bn", 32): [20.0, 20.5]}, report={"budget": "fixed", "claims": []}
    )
    write_records(tmp_path / "m", records)
    study_file = tmp_path / "delta.yaml"
    study_file.write_text(yaml.safe_dump({"report": {"budget": "fixed", "claims": [DEGRADES]}}))
    first, second = tmp_path / "r1", tmp_path / "r2"
    assert report_main([str(tmp_path / "m"), "--out", str(first), "--claims", str(study_file)]) == 0
    assert report_main([str(first / "delta"), "--out", str(second)]) == 0
    assert (second / "delta" / "claims.csv").read_text() == (first / "delta" / "claims.csv").read_text()
    assert "claims_from" in (second / "delta" / "claims.md").read_text()
    assert json.loads((second / "delta" / "meta.json").read_text())["claims_from"] == str(study_file)
    study_file.unlink()  # gone: the records' own claims, with a warning naming the file
    with pytest.warns(UserWarning, match="claims_from in its meta.json"):
        assert report_main([str(second / "delta"), "--out", str(tmp_path / "r3")]) == 0
    assert pd.read_csv(tmp_path / "r3" / "delta" / "claims.csv").empty


def test_a_failure_mid_report_leaves_the_earlier_report_intact(tmp_path, monkeypatch):
    import src.report.__main__ as cli
    import src.report.pipeline as pipeline

    first = {("bn", 2): [30.0, 31.0], ("bn", 32): [20.0, 20.5], ("gn", 32): [21.0, 21.5]}  # every claimed norm
    write_records(tmp_path / "m", grid("delta", first, report=SPEC))
    out = tmp_path / "results"
    assert cli.main([str(tmp_path / "m"), "--out", str(out)]) == 0
    before = {str(p.relative_to(out)): p.read_bytes() for p in (out / "delta").rglob("*") if p.is_file()}
    write_records(tmp_path / "m", grid("delta", {("gn", 2): [22.0, 23.0]}, report=SPEC))

    def broken(*args: Any, **kwargs: Any) -> str:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(pipeline, "render_claims", broken)
    with pytest.raises(RuntimeError, match="disk on fire"):
        cli.main([str(tmp_path / "m"), "--out", str(out)])
    assert {str(p.relative_to(out)): p.read_bytes() for p in (out / "delta").rglob("*") if p.is_file()} == before

    monkeypatch.undo()
    monkeypatch.setattr(pipeline, "error_vs_batch", broken)  # a figure that fails is a warning only
    with pytest.warns(UserWarning, match="error_vs_batch.png not drawn"):
        assert cli.main([str(tmp_path / "m"), "--out", str(out)]) == 0
    assert len(pd.read_csv(out / "delta" / "runs.csv")) == 8
    assert (out / "delta" / "error_vs_batch.png").read_bytes() == before["delta/error_vs_batch.png"]
    assert not list(out.rglob("*.tmp"))


def test_the_report_never_imports_training_code():
    code = (
        "import sys, src.report.__main__\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['src','train'], ['src','models'],"
        " ['src','norms'], ['src','data'], ['src','module'])]\n"
        "assert not bad, bad\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_report_on_a_real_tiny_multirun(tmp_path):
    sweep = tmp_path / "multirun"
    result = run_train(
        "-m",
        "norm=bn,gn",
        "batch=8,16",
        "dataset=digits",
        "epochs=1",
        "logger=none",
        "model.widths=[8,16]",
        "dataset.train_size=400",
        "study=tiny",
        f"hydra.sweep.dir={sweep}",
        cwd=tmp_path,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    study_file = tmp_path / "tiny.yaml"
    claim = {"id": "gn_flat", "claim": "GN is flat", "kind": "flat", "norm": "gn", "at_most": 5.0}
    study_file.write_text(yaml.safe_dump({"report": {"budget": "fixed", "claims": [claim, DEGRADES]}}))
    out = tmp_path / "results"
    assert report_main([str(sweep), "--out", str(out), "--claims", str(study_file)]) == 0
    runs = pd.read_csv(out / "tiny" / "runs.csv")
    assert len(runs) == 4 and set(runs.norm) == {"bn", "gn"} and set(runs.batch) == {8, 16}
    assert runs.test_error.between(0, 100).all() and (runs.steps_per_second > 0).all()
    summary = pd.read_csv(out / "tiny" / "summary.csv")
    assert list(summary.n) == [1, 1, 1, 1]
    claims = pd.read_csv(out / "tiny" / "claims.csv")
    assert list(claims.verdict) == [INCONCLUSIVE, NO_DATA]  # one seed: no CI; no batch 2 or 32 runs
    assert (out / "tiny" / "error_vs_batch.png").stat().st_size > 1000
    assert (out / "tiny" / "learning_curves.svg").read_bytes().startswith(b"<?xml")  # from the runs' curves
    # as make demo does: the report inside the sweep's folder, twice; its runs.jsonl copies are the same runs
    inside = sweep / "report"
    for _ in range(2):
        assert report_main([str(sweep), "--out", str(inside), "--claims", str(study_file)]) == 0
        assert pd.read_csv(inside / "tiny" / "not_counted.csv").empty
        assert len(pd.read_csv(inside / "tiny" / "runs.csv")) == 4


def test_the_sweep_command_is_rebuilt_from_the_records():
    launch = {
        "config_name": "small_batch",
        "config_dir": "sweeps",
        "hydra_overrides": ["hydra/launcher=parallel"],
        "multirun": True,
    }
    runs = pd.DataFrame(
        {
            "launch": [json.dumps(launch)] * 4 + [None],
            "overrides": [
                json.dumps(["norm=bn", "batch=32", "model.widths=[16,32]"]),
                json.dumps(["norm=gn", "batch=2", "model.widths=[16,32]"]),
                json.dumps(["norm=bn", "batch=2", "model.widths=[16,32]"]),
                json.dumps(["norm=gn", "batch=32", "model.widths=[16,32]"]),
                json.dumps(["norm=ln"]),  # an older record without `launch`: left out
            ],
        }
    )
    assert sweep_commands(runs) == [
        "python -m src.train -m --config-dir sweeps --config-name small_batch hydra/launcher=parallel "
        "norm=bn,gn batch=2,32 'model.widths=[16,32]'"
    ]
    single = sweep_command({"config_name": "train", "multirun": False, "hydra_overrides": []}, [["norm=gn"]])
    assert single == "python -m src.train norm=gn"


def test_the_reports_own_output_does_not_make_the_commit_dirty(tmp_path):
    from src.run.provenance import git_commit, inside_project

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    git("init", "-q")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "table.md").write_text("old\n")
    (tmp_path / "code.py").write_text("x = 1\n")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    clean = git_commit(tmp_path)
    (tmp_path / "results" / "table.md").write_text("new\n")
    assert git_commit(tmp_path, ignore=["results"]) == clean and not clean.endswith("+dirty")
    assert git_commit(tmp_path) == f"{clean}+dirty"
    (tmp_path / "code.py").write_text("x = 2\n")
    assert git_commit(tmp_path, ignore=["results"]) == f"{clean}+dirty"
    assert inside_project(tmp_path / "results" / "bench", tmp_path) == ["results/bench"]  # a command's output
    assert inside_project(tmp_path.parent, tmp_path) == []  # outside the project: nothing to leave out


def test_the_report_orders_and_labels_norms_by_what_their_records_say(tmp_path):
    info = {"label": "My Norm", "family": "other", "order": -1, "color": "#123456", "shift": True}
    records = grid("own", {("bn", 8): [20.0, 21.0], ("gn", 8): [22.0, 23.0]})
    records += [make_record("own", "mynorm", 8, seed, 19.0 + seed, norm_info=info) for seed in range(2)]
    runs = runs_of(records, tmp_path)
    from src.report.norm_info import NormCatalog
    from src.report.tables import pivot_table, summarize

    catalog = NormCatalog.from_runs(runs)
    assert catalog.label("mynorm") == "My Norm" and catalog.colors(["mynorm"]) == {"mynorm": "#123456"}
    assert catalog.label("bn") == "Batch Norm"  # records without norm_info: the norm's own YAML
    assert list(summarize(runs, catalog)["norm"]) == ["mynorm", "bn", "gn"]  # its declared order first
    [table] = pivot_table(summarize(runs, catalog), catalog=catalog).values()
    assert list(table.index) == ["mynorm", "bn", "gn", "gn − bn"]
    assert runs.loc[runs.norm == "mynorm", "norm_label"].tolist() == ["My Norm", "My Norm"]


def test_runs_that_are_not_one_grid_get_one_command_per_grid():
    """A pilot's stages: each command must run exactly the runs recorded, never the full product."""
    from src.report.commands import grids

    stage1 = [["norm=bn", f"optim.base_batch={b}"] for b in (32, 128)]
    stage2 = [
        [f"norm={n}", f"standardize_weights={ws}", f"optim.warmup_epochs={w}"]
        for n in ("bn", "gn")
        for ws, w in (("true", 0), ("false", 2))
    ]
    groups = grids(stage1 + stage2)
    assert sorted(map(len, groups)) == [2, 2, 2]
    for group in groups:
        keys = [[item.partition("=")[0] for item in run] for run in group]
        assert all(k == keys[0] for k in keys)
    assert ["norm=gn", "standardize_weights=true", "optim.warmup_epochs=0"] in next(
        g for g in groups if len(g[0]) == 3 and "standardize_weights=true" in g[0]
    )


def test_a_claim_may_name_a_config_key_that_has_not_varied_yet(tmp_path):
    """Every run so far had standardize_weights true: the claim's where names it all the same."""
    records = grid("ws", {("bn", 2): [40.0, 41.0, 39.0], ("bn", 32): [31.0, 31.5, 30.5]})
    for record in records:
        record["config"]["standardize_weights"] = True
    spec = {
        "budget": "fixed",
        "claims": [
            {
                "id": "c",
                "kind": "difference",
                "norm": "bn",
                "batches": [2, 32],
                "at_least": 3.0,
                "where": {"standardize_weights": True},
                "published": [],
            }
        ],
    }
    for record in records:
        record["config"]["report"] = spec
    root = write_records(tmp_path / "runs", records)
    assert report_main([str(root), "--out", str(tmp_path / "out")]) == 0
    claims = pd.read_csv(tmp_path / "out" / "ws" / "claims.csv")
    assert list(claims.verdict) == ["reproduced"]


def test_plot_panels_run_in_numeric_order_under_short_titles():
    from src.report.figure import panel_title, short_setting
    from src.report.plots import natural_key

    labels = [("cifar10", "resnet8 · epochs=16"), ("cifar10", "resnet8 · epochs=32"), ("cifar10", "resnet8 · epochs=8")]
    assert sorted(labels, key=natural_key) == [labels[2], labels[0], labels[1]]
    values = {"dataset": "cifar10_jpeg", "model": "resnet8", "dataset.augment": "crop_flip_reflect"}
    values["norm.layer.min_group_size"] = 4.0
    title = panel_title(values, ["dataset.augment", "norm.layer.min_group_size"])
    assert title == "crop padding: reflect · min group size 4"  # never a config string
    assert panel_title(values, []) == "cifar10_jpeg · resnet8"
    assert short_setting("epochs", 16.0) == "16 epochs" and short_setting("standardize_weights", False) == "no WS"
    assert short_setting("norm.layer.min_group_size", float("nan")) == ""
