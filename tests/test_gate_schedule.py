"""The convergence gate is schedule-aware: a curve whose learning rate anneals to its end is judged against
the same cell's shorter schedule, not by its falling last epochs."""

import math

import pandas as pd
import pytest

from src.report.cells import Cell
from src.report.gate import FAILED, PARTLY, PASSED, WAIVED, GateRule, annealed, check, shorter_schedule
from src.report.spec import check_claim, check_spec
from src.report.spec_checks import SpecError


def curve(epochs: int, final_val: float, cosine: bool = True) -> pd.DataFrame:
    """A curve whose validation error falls 4 points over its last 3 epochs and ends at ``final_val``."""
    rows = []
    for e in range(epochs):
        lr = 0.1 * (0.5 * (1 + math.cos(math.pi * (e + 1) / epochs))) if cosine else 0.1
        rows.append({"epoch": e, "train_loss": 1.0, "val_error": final_val + max(0, epochs - 1 - e) * 4 / 3, "lr": lr})
    return pd.DataFrame(rows)


def study(finals: dict[tuple[str, int], float], cosine: bool = True, seeds: int = 2):
    rows, curves = [], {}
    for (norm, epochs), final in finals.items():
        for seed in range(seeds):
            run_dir = f"{norm}-{epochs}-{seed}"
            rows.append(
                {"norm": norm, "batch": 32, "epochs": epochs, "run_dir": run_dir, "train_loss": 1.0, "val_error": final}
            )
            curves[run_dir] = curve(epochs, final, cosine)
    return pd.DataFrame(rows), curves


def cells(epochs: int) -> list[Cell]:
    return [Cell.of(norm="bn", batch=32, epochs=epochs), Cell.of(norm="gn", batch=32, epochs=epochs)]


def test_an_annealed_curve_is_recognised_and_a_constant_one_is_not():
    assert annealed(curve(16, 30.0), 0.05)
    assert not annealed(curve(16, 30.0, cosine=False), 0.05)
    assert not annealed(curve(16, 30.0).drop(columns=["lr"]), 0.05)


def test_a_longer_schedule_that_no_longer_pays_passes():
    runs, curves = study({("bn", 8): 31.5, ("bn", 16): 31.0, ("gn", 8): 34.2, ("gn", 16): 33.5})
    result = check(cells(16), runs, curves, GateRule())
    assert result.status == PASSED, result.lines
    assert any("8 → 16 epochs lowered the final validation error by +0.50" in line for line in result.lines)


def test_a_longer_schedule_that_still_pays_fails_and_suggests_a_longer_one():
    runs, curves = study({("bn", 8): 31.5, ("bn", 16): 31.0, ("gn", 8): 37.0, ("gn", 16): 33.5})
    result = check(cells(16), runs, curves, GateRule())
    assert result.status == FAILED and result.undertrained == ["gn@32 epochs=16"]
    assert any("+3.50" in line and "(> 1: a longer schedule still pays)" in line for line in result.lines)
    assert any("e.g. 32" in text for text in result.epochs)


def test_without_a_shorter_schedule_the_check_is_partly_made_and_says_why():
    runs, curves = study({("bn", 16): 31.0, ("gn", 16): 33.5})
    result = check(cells(16), runs, curves, GateRule())
    assert result.status == PARTLY
    assert any("no shorter schedule of the same cell" in line for line in result.lines)


def test_a_constant_rate_curve_keeps_the_flatness_rule():
    runs, curves = study({("bn", 16): 31.0, ("gn", 16): 33.5}, cosine=False)
    result = check(cells(16), runs, curves, GateRule())
    assert result.status == FAILED and "still improving" in " ".join(result.lines)


def test_the_shortest_schedule_has_no_shorter_one_and_a_cell_mixing_schedules_has_none():
    runs, _ = study({("bn", 8): 31.5, ("bn", 16): 31.0})
    eight = Cell.of(norm="bn", batch=32, epochs=8)
    assert shorter_schedule(eight, runs[eight.mask(runs)], runs) is None
    mixed = Cell.of(norm="bn", batch=32)
    assert shorter_schedule(mixed, runs[mixed.mask(runs)], runs) is None
    sixteen = Cell.of(norm="bn", batch=32, epochs=16)
    found = shorter_schedule(sixteen, runs[sixteen.mask(runs)], runs)
    assert found is not None and found[1:] == (8, 16) and str(found[0]) == "bn@32 epochs=8"


def test_the_rule_reads_its_new_thresholds_from_the_study():
    rule = GateRule.of({"max_schedule_gain": 2.0, "annealed_below": 0.1})
    assert (rule.max_schedule_gain, rule.annealed_below) == (2.0, 0.1)
    assert "shorter schedule" in rule.describe()


def test_a_claim_that_waives_the_gate_is_judged_and_shows_its_reason():
    runs, curves = study({("bn", 8): 31.5, ("bn", 16): 31.0, ("gn", 8): 37.0, ("gn", 16): 33.5})
    waived = GateRule.of({"max_schedule_gain": 1.0}, {"waived": "the claim is about the schedule itself"})
    result = check(cells(16) + cells(8), runs, curves, waived)
    assert result.status == WAIVED and not result.undertrained
    assert result.lines == ["not applied, as the claim states: the claim is about the schedule itself"]
    assert check(cells(16) + cells(8), runs, curves, GateRule()).status == FAILED  # the same cells, not waived


def test_only_a_claim_may_waive_the_gate_and_it_must_say_why():
    claim = {
        "id": "gap",
        "kind": "contrast",
        "cells": [{"norm": "gn"}, {"norm": "bn"}],
        "weights": [1, -1],
        "at_most": 0.0,
    }
    check_claim("report.claims[0]", {**claim, "convergence": {"waived": "a property of training itself"}})
    with pytest.raises(SpecError, match=r"^report.claims\[0\] \(gap\).convergence.waived = '': must state why"):
        check_claim("report.claims[0]", {**claim, "convergence": {"waived": ""}})
    with pytest.raises(SpecError, match=r"^report.convergence.waived = 'x': unknown key; allowed: annealed_below"):
        check_spec({"convergence": {"waived": "x"}})
