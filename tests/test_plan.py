"""Planned power (``python -m src.report --plan``): seeds per cell from a pilot's variance.

The seeds are checked against stats' own ``seeds_needed`` and independently: statsmodels' two-sample t
power for a one-sided two-cell difference, and a Monte-Carlo TOST with a fixed RNG seed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats
from statsmodels.stats.power import TTestIndPower

from src.report.__main__ import main as report_main
from src.report.cells import Cell
from src.report.cells import Test as ContrastTest  # not collected as a test class
from src.report.plan import assumed_theta, compose_study, design_of, power_of, seeds_at
from src.report.stats import power_one_sided, power_tost, seeds_needed
from src.run.records import RunRecord, write_runs

from .conftest import ROOT

A, B = Cell.of(norm="gn", batch=32), Cell.of(norm="bn", batch=32)


def two_cells(test: str, bound: float) -> ContrastTest:
    return ContrastTest("gn@32 − bn@32", test, bound, {A: 1.0, B: -1.0})


@pytest.mark.parametrize(("shift", "sd", "alpha"), [(1.0, 0.8, 0.025), (0.5, 0.6, 0.00625)])
def test_one_sided_seeds_match_statsmodels_two_sample_power(shift: float, sd: float, alpha: float) -> None:
    test = two_cells("direction", 0.0)
    seeds = seeds_at(test, shift, sd, alpha, factor=2.0, cells=2, target=0.8)
    assert seeds == seeds_needed(lambda n: power_one_sided(shift, sd, 2.0, n, 2, alpha), 0.8)
    # independent: a two-sample t test of n + n runs, df = 2n − 2, d = shift / sd
    power = TTestIndPower()
    for n in (seeds - 1, seeds):
        expected = power.power(effect_size=shift / sd, nobs1=n, alpha=alpha, ratio=1.0, alternative="larger")
        assert power_of(test, shift, sd, 2.0, n, 2, alpha) == pytest.approx(expected, abs=1e-6)
    solved = power.solve_power(effect_size=shift / sd, alpha=alpha, power=0.8, ratio=1.0, alternative="larger")
    assert seeds == max(2, math.ceil(solved))


def test_tost_seeds_match_seeds_needed_and_a_monte_carlo() -> None:
    test, sd, alpha, cells = two_cells("within", 1.0), 1.0, 0.025, 2
    seeds = seeds_at(test, 0.0, sd, alpha, factor=2.0, cells=cells, target=0.8)
    assert seeds == seeds_needed(lambda n: power_tost(0.0, 1.0, sd, 2.0, n, cells, alpha), 0.8)
    rng = np.random.default_rng(0)
    for n in (seeds - 1, seeds):
        a, b = rng.normal(0.0, sd, (4000, n)), rng.normal(0.0, sd, (4000, n))
        diff = a.mean(1) - b.mean(1)
        pooled = np.sqrt((a.var(1, ddof=1) + b.var(1, ddof=1)) / 2)
        se, critical = pooled * math.sqrt(2 / n), stats.t.ppf(1 - alpha, 2 * (n - 1))
        simulated = float(np.mean((diff - critical * se > -1.0) & (diff + critical * se < 1.0)))
        assert power_of(test, 0.0, sd, 2.0, n, cells, alpha) == pytest.approx(simulated, abs=0.03)
    assert power_of(test, 0.0, sd, 2.0, seeds - 1, cells, alpha) < 0.8 <= power_of(test, 0.0, sd, 2.0, seeds, 2, alpha)


def test_assumed_theta_per_test() -> None:
    assert assumed_theta(two_cells("within", 1.0), {}, 1.0) == (0.0, "equivalence")
    assert assumed_theta(two_cells("at_least", 2.0), {}, 0.5)[0] == 2.5
    assert assumed_theta(two_cells("at_most", -2.0), {}, 0.5)[0] == -2.5
    assert assumed_theta(two_cells("direction", 0.0), {"margin": 1.5}, 1.0) == (1.5, "the claim's margin")
    assert assumed_theta(two_cells("direction", 0.0), {"at_most": -3.0}, 1.0)[0] == 3.0
    assert assumed_theta(two_cells("direction", 0.0), {}, 0.7) == (0.7, "--effect")


def write_study(folder: Path, name: str, data: dict) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def test_design_composes_the_parent_study_sweep(tmp_path: Path) -> None:
    write_study(
        tmp_path, "parent", {"batch": 32, "hydra": {"sweeper": {"params": {"norm": "bn,gn,ln", "seed": "0,1"}}}}
    )
    child = {
        "defaults": ["parent", "_self_"],
        "hydra": {"sweeper": {"params": {"norm": "bn,gn", "seed": "range(10,14)"}}},
    }
    design, seeds = design_of(compose_study(write_study(tmp_path, "child", child)))
    assert seeds == [10, 11, 12, 13]
    assert sorted(design["norm"]) == ["bn", "gn"] and set(design["batch"]) == {32}


PILOT = {  # (augment, norm): val_error per seed; augment "other" is far noisier and must be filtered out
    ("reflect", "bn"): [20.0, 20.4, 20.8, 21.2],
    ("reflect", "gn"): [21.0, 21.6, 21.2, 21.8],
    ("other", "bn"): [10.0, 30.0, 15.0, 25.0],
    ("other", "gn"): [12.0, 28.0, 20.0, 22.0],
}
STUDY = {
    "hydra": {"sweeper": {"params": {"norm": "bn,gn", "batch": "2,32", "seed": "10,11,12"}}},
    "epochs": 16,
    "report": {
        "where": {"epochs": 16},
        "claims": [
            {"id": "close", "kind": "equivalent", "norms": ["gn", "bn"], "batch": 32, "within": 1.0},
            {"id": "gn_wins_at_2", "kind": "less", "norms": ["gn", "bn"], "batch": 2},
        ],
    },
}


def write_pilot(folder: Path) -> Path:
    records = []
    for (augment, norm), values in PILOT.items():
        for seed, value in enumerate(values):
            config = {"seed": seed, "batch": 32, "epochs": 16, "norm": {"name": norm}, "dataset": {"augment": augment}}
            records.append(
                RunRecord(
                    status="completed",
                    study="pilot",
                    norm=norm,
                    batch=32,
                    dataset="cifar10",
                    model="resnet8",
                    seed=seed,
                    epochs=16,
                    config=config,
                    run_dir=f"{folder}/{augment}-{norm}-{seed}",
                    overrides=[f"norm={norm}", f"dataset.augment={augment}", f"seed={seed}"],
                    metrics={"val_error": value, "test_error": value + 0.3},
                )
            )
    folder.mkdir(parents=True)
    write_runs(folder / "runs.jsonl", records)
    return folder


def test_cli_prints_and_writes_the_plan_for_a_synthetic_pilot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study, pilot = write_study(tmp_path, "tiny", STUDY), write_pilot(tmp_path / "pilot")
    args = ["--plan", str(study), "--pilot", str(pilot), "--metric", "val_error", "--where", "dataset.augment=reflect"]
    assert report_main([*args, "--out", str(tmp_path / "out")]) == 0
    printed = capsys.readouterr().out
    sd = math.sqrt(np.mean([np.var(v, ddof=1) for (augment, _), v in PILOT.items() if augment == "reflect"]))
    level = 0.05 / 2 / 2  # α/2 over m = 2 claims
    direction = seeds_needed(lambda n: power_one_sided(1.0, sd, 2.0, n, 4, level), 0.8)
    tost = seeds_needed(lambda n: power_tost(0.0, 1.0, sd, 2.0, n, 4, level), 0.8)
    assert f"σ = {sd:.3f} points" in printed and "4 cells (norm × batch" in printed
    assert "| claim | test | claim says | assumed θ | σ | seeds/cell |" in printed
    assert re.search(
        rf"\| gn_wins_at_2 \| bn@2 epochs=16 − gn@2 epochs=16 \| > 0 \| \+1\.00 .*\| {direction} \|", printed
    )
    assert f"- close: {tost} " in printed and f"- gn_wins_at_2: {direction} " in printed
    assert f"Total: {max(tost, direction)} seeds × 4 cells" in printed
    assert f"seed={','.join(str(s) for s in range(10, 10 + max(tost, direction)))}" in printed
    pilot_estimate = np.mean(PILOT["reflect", "gn"]) - np.mean(PILOT["reflect", "bn"])
    assert f"| {pilot_estimate:+.2f} |" in printed  # the pilot has the equivalence claim's cells
    written = (tmp_path / "out" / "plan_tiny.md").read_text(encoding="utf-8")
    table, _, provenance = written.partition("\n- command: ")
    assert table in printed  # the printed plan, then where it came from
    assert provenance.startswith("`python -m src.report --plan") and "- commit: " in provenance
    assert "- machine: " in provenance and "- written: " in provenance


def test_cli_with_a_given_sd_needs_no_pilot(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    study = write_study(tmp_path, "tiny", STUDY)
    assert report_main(["--plan", str(study), "--sd", "0.5", "--out", str(tmp_path / "plan.md")]) == 0
    assert "σ = 0.5 points (--sd)" in capsys.readouterr().out and (tmp_path / "plan.md").exists()


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["--plan", "missing.yaml", "--sd", "1"], "--plan missing.yaml"),
        (["--plan", "{study}", "--pilot", "no_such_dir"], "--pilot no_such_dir"),
        (["--plan", "{study}"], "--pilot"),
        (["--plan", "{study}", "--pilot", "{pilot}", "--where", "nokey=1"], "--where nokey=1"),
        (["--plan", "{study}", "--sd", "-1"], "--sd -1"),
    ],
)
def test_errors_are_one_line_naming_the_flag(tmp_path: Path, capsys, args: list[str], named: str) -> None:
    study, pilot = write_study(tmp_path, "tiny", STUDY), write_pilot(tmp_path / "pilot")
    assert report_main([a.format(study=study, pilot=pilot) for a in args]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and named in error and error.count("\n") == 1 and "Traceback" not in error


def test_make_plan_is_listed_by_make_help() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    assert re.search(r"^plan: .*## seeds per cell", makefile, re.M)
    assert "--plan conf/experiment/$(STUDY).yaml" in makefile
