"""The ``contrast`` claim kind: any weighted sum of cell means with weights summing to 0, e.g. whether
GN's gap to BN at batch 32 shrinks with the longer schedule (a difference of differences)."""

from __future__ import annotations

from typing import Any

import pandas as pd
import pytest

from src.report.claims import NOT_REPRODUCED, REPRODUCED, UNDECIDED, evaluate_claims
from src.report.spec import SpecError
from src.report.stats import CellModel

from .test_report import make_record, runs_of

CELLS = [
    {"norm": "gn", "epochs": 12},
    {"norm": "bn", "epochs": 12},
    {"norm": "gn", "epochs": 24},
    {"norm": "bn", "epochs": 24},
]
SHRINKS = [1, -1, -1, 1]  # (gn − bn)@12 − (gn − bn)@24: how much of GN's gap the longer schedule closes


def schedules(errors: dict[tuple[str, int], list[float]], tmp_path) -> pd.DataFrame:
    """Runs at batch 32 for {(norm, epochs): [test error per seed]}."""
    records = []
    for (norm, epochs), values in errors.items():
        for seed, error in enumerate(values):
            record = make_record("contrast", norm, 32, seed, error)
            record["epochs"] = record["config"]["epochs"] = epochs
            record["overrides"] = [*record["overrides"], f"epochs={epochs}"]
            records.append(record)
    return runs_of(records, tmp_path)


def claim(**bounds: Any) -> dict[str, Any]:
    return {
        "id": "gap_shrinks",
        "kind": "contrast",
        "where": {"batch": 32},
        "cells": CELLS,
        "weights": SHRINKS,
        **bounds,
    }


NOISE = [-0.2, 0.0, 0.2]


def test_a_gap_that_clearly_shrinks_is_reproduced_with_its_direction(tmp_path):
    errors = {("gn", 12): 24.0, ("bn", 12): 20.0, ("gn", 24): 19.0, ("bn", 24): 18.0}  # gaps 4 → 1
    runs = schedules({key: [value + e for e in NOISE] for key, value in errors.items()}, tmp_path)
    [result] = evaluate_claims(runs, {"budget": "fixed", "claims": [claim(at_least=1.0)]})
    assert result.verdict == REPRODUCED and result.direction.verdict == REPRODUCED
    assert result.kind == "contrast" and result.estimate.value == pytest.approx(3.0)
    test = result.sizes[0]
    assert test.label == "(gn@32 epochs=12) − (bn@32 epochs=12) − (gn@32 epochs=24) + (bn@32 epochs=24)"
    assert result.statement == f"{test.label} ≥ 1"
    # the interval is the pooled cell-means model's, as for every other kind
    model = CellModel({key: [value + e for e in NOISE] for key, value in errors.items()})
    expected = model.contrast({("gn", 12): 1, ("bn", 12): -1, ("gn", 24): -1, ("bn", 24): 1})
    assert (result.estimate.low, result.estimate.high) == pytest.approx((expected.low, expected.high))
    assert result.model_df == 12 - 4
    # the same contrast the other way round, bounded above: reproduced with θ < 0 as its direction
    flipped = {**claim(at_most=-1.0), "weights": [-w for w in SHRINKS]}
    [result] = evaluate_claims(runs, {"budget": "fixed", "claims": [flipped]})
    assert result.verdict == REPRODUCED and result.direction.verdict == REPRODUCED
    assert result.estimate.value == pytest.approx(-3.0) and result.direction.estimate.value == pytest.approx(3.0)
    # and a claim that it shrinks by 5 or more is contradicted
    assert evaluate_claims(runs, {"budget": "fixed", "claims": [claim(at_least=5.0)]})[0].verdict == NOT_REPRODUCED


def test_a_gap_that_stays_the_same_is_shown_equivalent_to_zero(tmp_path):
    errors = {("gn", 12): 24.0, ("bn", 12): 22.0, ("gn", 24): 20.05, ("bn", 24): 18.0}  # gaps 2 → 2.05
    runs = schedules({key: [value + e / 2 for e in NOISE] for key, value in errors.items()}, tmp_path)
    [result] = evaluate_claims(runs, {"budget": "fixed", "claims": [claim(within=1.0)]})
    assert result.verdict == REPRODUCED and result.direction is None
    assert result.estimate.value == pytest.approx(-0.05)
    assert result.statement.endswith("within ±1 (equivalence, TOST)")
    assert evaluate_claims(runs, {"budget": "fixed", "claims": [claim(at_least=1.0)]})[0].verdict == NOT_REPRODUCED


def test_a_noisy_interaction_is_undecided_and_says_how_many_seeds_would_decide_it(tmp_path):
    spread = [-3.0, 0.0, 3.0]
    errors = {("gn", 12): 24.0, ("bn", 12): 20.0, ("gn", 24): 21.0, ("bn", 24): 18.5}  # gaps 4 → 2.5
    runs = schedules({key: [value + e for e in spread] for key, value in errors.items()}, tmp_path)
    [result] = evaluate_claims(runs, {"budget": "fixed", "claims": [claim(at_least=0.5)]})
    assert result.verdict == UNDECIDED and result.direction.verdict == UNDECIDED
    assert result.estimate.value == pytest.approx(1.5)
    assert result.seeds and result.seeds > 3
    assert result.as_row()["seeds_per_cell_needed"] == result.seeds


def test_a_contrast_with_missing_cells_has_no_data(tmp_path):
    runs = schedules({("gn", 12): [24.0, 24.2], ("bn", 12): [20.0, 20.2]}, tmp_path)
    [result] = evaluate_claims(runs, {"budget": "fixed", "claims": [claim(at_least=1.0)]})
    assert result.verdict == "no data" and any("missing runs for" in note for note in result.notes)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            {"weights": [1, -1, -1, 2]},
            "report.claims[0] (gap_shrinks).weights = [1, -1, -1, 2]: must sum to 0 (a contrast of cell means);"
            " they sum to 1",
        ),
        (
            {"weights": [1, -1, 0]},
            "report.claims[0] (gap_shrinks).weights = [1, -1, 0]: must be one number per cell (4 cells, 3 weights)",
        ),
        ({"weights": [0, 0, 0, 0]}, "report.claims[0] (gap_shrinks).weights = [0, 0, 0, 0]: must not all be 0"),
        (
            {"weights": [1, "a", 0, 0]},
            "report.claims[0] (gap_shrinks).weights = [1, 'a', 0, 0]: must be a list of numbers",
        ),
        ({"cells": [{"norm": "gn"}]}, "report.claims[0] (gap_shrinks).cells = [{'norm': 'gn'}]: must be a list of two"),
        (
            {"cells": [*CELLS[:3], {"epochs": [1]}]},
            "report.claims[0] (gap_shrinks).cells[3].epochs = [1]: must be a single",
        ),
        (
            {"margin": 1},
            "report.claims[0] (gap_shrinks).margin = 1: unknown key; allowed: at_least, at_most, budget, cells",
        ),
        ({"within": 1.0, "at_least": 1.0}, "report.claims[0] (gap_shrinks).within = 1.0: a contrast is either bounded"),
    ],
)
def test_a_bad_contrast_fails_with_one_line(change, message, tmp_path):
    runs = schedules({("gn", 12): [24.0, 24.2], ("bn", 12): [20.0, 20.2]}, tmp_path)
    spec = {**claim(at_least=1.0), **change}
    with pytest.raises(SpecError) as error:
        evaluate_claims(runs, {"budget": "fixed", "claims": [spec]})
    assert str(error.value).startswith(message) and "\n" not in str(error.value), str(error.value)


def test_a_contrast_needs_a_bound(tmp_path):
    runs = schedules({("gn", 12): [24.0, 24.2], ("bn", 12): [20.0, 20.2]}, tmp_path)
    with pytest.raises(SpecError, match=r"^report.claims\[0\] \(gap_shrinks\).at_least = None: a contrast claim needs"):
        evaluate_claims(runs, {"budget": "fixed", "claims": [claim()]})
