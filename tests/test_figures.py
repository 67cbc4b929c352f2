"""The report's figures as a paper would use them: faceted grids on a shared y axis, at most three panels a
row, short titles, weight standardization and the schedule in the legend, error bars from the verdicts'
per-cell interval, learning curves per study, every figure as PNG and a deterministic SVG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import pandas as pd
import pytest
import yaml

import src.report.learning_curves as learning_module
import src.report.plots as plots_module
from src.report.__main__ import main as report_main
from src.report.load import load_run_set
from src.report.slices import by_setting, design_columns
from src.report.stats import mean_ci
from src.report.tables import summarize

from .test_report import make_record, write_records

NAMED = ["standardize_weights"]


def schedule_records(study: str = "fig") -> list[dict[str, Any]]:
    """bn and gn at batch 2 and 32, 8 and 16 epochs with WS, 16 without; 3 seeds; each with a curve."""
    records = []
    for norm, base in (("bn", 30.0), ("gn", 33.0)):
        for batch in (2, 32):
            for epochs, ws in ((8, True), (16, True), (16, False)):
                for seed in range(3):
                    error = base + (6.0 if norm == "bn" and batch == 2 else 0.0) - epochs / 4 + seed * 0.7
                    record = make_record(study, norm, batch, seed, error, epochs=epochs)
                    record["config"].update(epochs=epochs, standardize_weights=ws)
                    record["overrides"] += [f"epochs={epochs}", f"standardize_weights={ws}"]
                    record["curve"] = [
                        {"epoch": e, "train_loss": 2.0 / (e + 1), "val_error": error + 20.0 / (e + 1), "lr": 0.1}
                        for e in range(epochs)
                    ]
                    records.append(record)
    return records


def tables(tmp_path: Path, records: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame, list[str], dict]:
    run_set = load_run_set(write_records(tmp_path / "runs", records))
    runs = by_setting(run_set.runs, NAMED)
    return runs, summarize(runs), design_columns(run_set.runs, NAMED), run_set.curves


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> list[plt.Figure]:
    """The figures the plot functions draw, kept open for inspection instead of saved."""
    figures: list[plt.Figure] = []

    def keep(figure: plt.Figure, dpi: int = 120) -> tuple[bytes, bytes]:
        figures.append(figure)
        return b"png", b"svg"

    monkeypatch.setattr(plots_module, "save", keep)
    monkeypatch.setattr(learning_module, "save", keep)
    yield figures
    for figure in figures:
        plt.close(figure)


def visible_axes(figure: plt.Figure) -> list[Any]:
    return [axis for axis in figure.axes if axis.get_visible()]


def grid_shape(axes: list[Any]) -> tuple[int, int]:
    spec = axes[0].get_subplotspec().get_gridspec()
    return spec.nrows, spec.ncols


def test_error_vs_batch_puts_ws_and_the_schedule_in_the_legend_with_the_verdicts_interval(tmp_path, captured):
    runs, summary, design, _ = tables(tmp_path, schedule_records())
    assert design == ["epochs", "standardize_weights"]
    reference = {"short": "GN paper", "batches": [32, 2], "rows": {"bn": [23.6, 34.7], "gn": [24.1, 24.1]}}
    plots_module.error_vs_batch(summary, "fig", reference=reference, design=design)
    [figure] = captured
    axes = visible_axes(figure)
    assert len(axes) == 2 and grid_shape(axes) == (1, 2)  # one panel of ours (WS, schedule: legend), one published
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    assert axes[0].get_title() == "fashion_mnist_small · small_cnn"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert "Batch Norm, WS, 8 epochs (n=3)" in legend and "Group Norm, no WS, 16 epochs (n=3)" in legend
    assert len(legend) == 6  # two norms × three settings, each once
    # each error bar is the cell's one-sample t interval (mean_ci): the per-cell-variance model for one cell
    cell = runs[(runs.norm == "bn") & (runs.batch == 2) & (runs.epochs == 8)]
    row = summary[(summary.norm == "bn") & (summary.batch == 2) & (summary.epochs == 8)].iloc[0]
    estimate = mean_ci(cell.test_error)
    assert (row.test_error_ci95_low, row.test_error_ci95_high) == pytest.approx((estimate.low, estimate.high))
    notes = " ".join(text.get_text() for text in figure.texts)
    assert "95 % t interval of each cell mean" in notes and "per-cell-variance model" in notes


def test_many_slices_wrap_to_at_most_three_panels_a_row_under_short_titles(tmp_path, captured):
    records = []
    for padding in ("crop_flip", "crop_flip_mean", "crop_flip_reflect"):
        for group in (2, 4, 8):
            for seed in range(2):
                record = make_record("wrap", "gn", 32, seed, 30.0 + group / 4 + seed)
                record["config"]["dataset"] = {"augment": padding}
                record["config"]["norm"]["layer"] = {"min_group_size": group}
                record["overrides"] += [f"dataset.augment={padding}", f"norm.layer.min_group_size={group}"]
                records.append(record)
    run_set = load_run_set(write_records(tmp_path / "runs", records))
    named = ["dataset.augment", "norm.layer.min_group_size"]
    runs = by_setting(run_set.runs, named)
    summary = summarize(runs)
    plots_module.error_by_norm(runs, summary, "wrap", 32, design=design_columns(run_set.runs, named))
    [figure] = captured
    axes = visible_axes(figure)
    assert len(axes) == 9 and grid_shape(axes) == (3, 3)
    titles = [axis.get_title().replace("\n", " · ") for axis in axes]  # wrapped between values in a narrow panel
    assert titles[:3] == [f"crop padding: zeros · min group size {g}" for g in (2, 4, 8)]  # numeric order
    assert all(len(line) <= 30 for axis in axes for line in axis.get_title().splitlines())
    assert not any("=" in title or "norm.layer" in title for title in titles)


def test_bar_labels_sit_above_the_seed_dots(tmp_path, captured):
    records = [make_record("dots", "bn", 32, seed, error) for seed, error in enumerate([20.0, 30.0, 25.0])]
    records += [make_record("dots", "gn", 32, seed, error) for seed, error in enumerate([24.0, 24.5, 25.0])]
    run_set = load_run_set(write_records(tmp_path / "runs", records))
    runs = by_setting(run_set.runs, [])
    plots_module.error_by_norm(runs, summarize(runs), "dots", 32)
    [axis] = visible_axes(captured[0])
    dots = [(x, y) for collection in axis.collections for x, y in collection.get_offsets()]
    labels = [a for a in axis.texts if not a.get_text().startswith("n=")]
    assert [a.get_text() for a in labels] == ["25.0", "24.5"]
    for label in labels:
        x, y = label.xy
        near = [dy for dx, dy in dots if abs(dx - x) < 0.5]
        assert y >= max(near) and label.xyann[1] > 0  # anchored at the highest dot, written above it


def test_learning_curves_show_each_cells_mean_validation_error_per_epoch(tmp_path, captured):
    runs, _, design, curves = tables(tmp_path, schedule_records())
    learning_module.learning_curves(runs, curves, "fig", design=design)
    [figure] = captured
    axes = visible_axes(figure)
    assert [axis.get_title() for axis in axes] == ["batch 32", "batch 2"]  # faceted like error_vs_batch, by batch
    assert axes[0].get_shared_y_axes().joined(axes[0], axes[1])
    line = next(li for li in axes[1].get_lines() if li.get_label() == "Batch Norm, WS, 8 epochs")
    cell = runs[(runs.norm == "bn") & (runs.batch == 2) & (runs.epochs == 8) & (runs.standardize_weights)]
    expected = [pd.Series([curves[d].loc[e, "val_error"] for d in cell.run_dir]).mean() for e in range(8)]
    assert list(line.get_xdata()) == list(range(1, 9)) and list(line.get_ydata()) == pytest.approx(expected)
    assert line.get_linestyle() == "-"
    dashed = next(li for li in axes[1].get_lines() if li.get_label() == "Batch Norm, no WS, 16 epochs")
    assert dashed.get_linestyle() == "--"
    assert learning_module.learning_curves(runs, {}, "fig") is None  # no curves: no figure


def test_every_figure_is_written_as_png_and_a_deterministic_svg(tmp_path):
    write_records(tmp_path / "m", schedule_records())
    first, second = tmp_path / "a", tmp_path / "b"
    spec = tmp_path / "fig.yaml"
    claim = {"id": "ws", "kind": "difference", "norm": "bn", "batches": [2, 32], "at_least": 1.0, "published": []}
    claim["where"] = {"epochs": 16, "standardize_weights": True}
    spec.write_text(yaml.safe_dump({"report": {"budget": "fixed", "claims": [claim]}}))
    for out in (first, second):
        assert report_main([str(tmp_path / "m"), "--out", str(out), "--claims", str(spec)]) == 0
    names = ("error_vs_batch", "error_by_norm", "learning_curves")
    for name in names:
        png, svg = (first / "fig" / f"{name}.png").read_bytes(), (first / "fig" / f"{name}.svg").read_bytes()
        assert png.startswith(b"\x89PNG") and svg.startswith(b"<?xml") and b"<dc:date>" not in svg
        assert svg == (second / "fig" / f"{name}.svg").read_bytes(), name
    summary = (first / "fig" / "summary.md").read_text()
    assert "[SVG](learning_curves.svg)" in summary and "mean_ci" in summary
