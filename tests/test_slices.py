"""Tables and plots never pool runs of different design settings into one (norm, batch) cell."""

import pandas as pd

from src.report.slices import by_setting, design_columns
from src.report.tables import summarize


def runs(**columns) -> pd.DataFrame:
    base = {
        "dataset": "d",
        "model": "m",
        "norm": "bn",
        "batch": 32,
        "test_error": [30.0, 31.0, 40.0, 41.0],
        "val_error": 1.0,
        "best_val_error": 1.0,
        "steps_per_second": 1.0,
    }
    return pd.DataFrame({**base, **columns})


def test_two_schedules_make_two_slices_and_their_cells_are_not_pooled():
    frame = runs(epochs=[16, 16, 8, 8], standardize_weights=[True] * 4)
    assert design_columns(frame, ["standardize_weights"]) == ["epochs"]
    labelled = by_setting(frame, ["standardize_weights"])
    assert sorted(set(labelled["slice"])) == ["m · epochs=16", "m · epochs=8"]
    assert labelled["model"].eq("m").all()  # the model stays the model; the setting is in its own column
    summary = summarize(labelled).set_index("slice")
    assert summary.loc["m · epochs=16", "test_error_mean"] == 30.5
    assert summary.loc["m · epochs=8", "test_error_mean"] == 40.5
    assert list(summary.index) == ["m · epochs=8", "m · epochs=16"]  # numeric order, not text order
    assert summary["model"].eq("m").all() and list(summary["epochs"]) == [8, 16]  # tidy columns
    assert frame["model"].eq("m").all() and "slice" not in frame  # the claims' runs are left as they were


def test_a_named_config_column_that_varies_is_part_of_the_setting():
    frame = runs(epochs=16, standardize_weights=[True, True, False, False])
    assert by_setting(frame, ["standardize_weights"])["slice"].tolist() == [
        "m · standardize_weights=True",
        "m · standardize_weights=True",
        "m · standardize_weights=False",
        "m · standardize_weights=False",
    ]
    assert by_setting(frame, [])["slice"].eq("m").all()  # a column no claim names is not a design column


def test_a_column_constant_within_each_slice_does_not_split_it():
    frame = runs(epochs=[16, 16, 8, 8], model=["a", "a", "b", "b"])
    assert design_columns(frame, []) == []
    assert by_setting(frame, [])["slice"].tolist() == frame["model"].tolist()
