"""A recipe pilot's table: recipes ranked on validation error over every norm, never on test error."""

from __future__ import annotations

import io
import json
import math

import pandas as pd
import pytest

from src.report.recipe_section import recipe_report
from src.report.recipes import ABSENT, as_value, recipe_runs, recipe_table, render_recipes
from src.report.spec import SpecError, check_spec

FACTORS = ["optim.base_batch", "norm_groups"]


def run(norm: str, seed: int, val: float, test: float, **factors: object) -> dict:
    overrides = [f"norm={norm}", f"seed={seed}", *(f"{key}={value}" for key, value in factors.items())]
    return {"norm": norm, "val_error": val, "test_error": test, "train_loss": 0.5, "overrides": json.dumps(overrides)}


def pilot() -> pd.DataFrame:
    rows = []
    for seed, noise in ((0, -0.5), (1, 0.5)):
        # bn ignores norm_groups: its runs join both gn recipes that share its learning rate
        rows.append(run("bn", seed, 20 + noise, 30, **{"optim.base_batch": 32}))
        rows.append(run("bn", seed, 24 + noise, 10, **{"optim.base_batch": 128}))
        rows.append(run("gn", seed, 26 + noise, 30, **{"optim.base_batch": 32, "norm_groups": 8}))
        rows.append(run("gn", seed, 30 + noise, 30, **{"optim.base_batch": 32, "norm_groups": 32}))
        rows.append(run("gn", seed, 25 + noise, 10, **{"optim.base_batch": 128, "norm_groups": 8}))
    return pd.DataFrame(rows)


def test_recipes_are_ranked_on_mean_validation_error_over_norms():
    table = recipe_table(pilot(), FACTORS)
    scores = table.drop_duplicates(FACTORS).set_index(FACTORS)["recipe_val_error"]
    assert scores[("32", "8")] == pytest.approx((20 + 26) / 2)
    assert scores[("128", "8")] == pytest.approx((24 + 25) / 2)
    assert scores[("32", "32")] == pytest.approx((20 + 30) / 2)
    ranks = table.drop_duplicates(FACTORS).set_index(FACTORS)["recipe_rank"]
    assert ranks[("32", "8")] == 1 and ranks[("128", "8")] == 2 and ranks[("32", "32")] == 3
    # test error would have chosen base_batch 128; it is reported, not used
    bn = table[(table["norm"] == "bn") & (table["optim.base_batch"] == "128")]
    assert bn["test_error"].iloc[0] == 10 and bn["n"].iloc[0] == 2
    assert bn["val_error_sd"].iloc[0] == pytest.approx(0.7071, abs=1e-4)


def test_a_recipe_missing_a_norm_is_not_ranked():
    runs = pilot()
    runs = runs[~((runs["norm"] == "bn") & runs["overrides"].str.contains("=128"))]
    table = recipe_table(runs, FACTORS)
    partial = table[table["optim.base_batch"] == "128"]
    assert partial["recipe_rank"].isna().all() and not partial["complete"].any()
    text = render_recipes(table, FACTORS)
    assert "| – | 128 | 8 |" in text and "| 1 | 32 | 8 |" in text


def test_a_later_stage_factor_reads_the_config_value_for_runs_that_did_not_set_it():
    """Stage 1 never set standardize_weights; stage 2 set it for bn and gn: stage 1's runs ran with the
    config's value (false), which the record's resolved config column carries."""
    factors = ["optim.base_batch", "standardize_weights"]
    rows = []
    for seed, noise in ((0, -0.5), (1, 0.5)):
        rows.append(run("bn", seed, 20 + noise, 20, **{"optim.base_batch": 32}))
        rows.append(run("gn", seed, 30 + noise, 30, **{"optim.base_batch": 32}))
        rows.append(run("bn", seed, 21 + noise, 20, **{"optim.base_batch": 32, "standardize_weights": "true"}))
        rows.append(run("gn", seed, 25 + noise, 25, **{"optim.base_batch": 32, "standardize_weights": "true"}))
    runs = pd.DataFrame(rows)
    runs["standardize_weights"] = [False, False, True, True] * 2
    table = recipe_table(runs, factors)
    scores = table.drop_duplicates(factors).set_index(factors)["recipe_val_error"]
    assert scores[("32", "True")] == pytest.approx((21 + 25) / 2)
    assert scores[("32", "False")] == pytest.approx((20 + 30) / 2)
    assert set(table["standardize_weights"]) == {"True", "False"}
    assert table.set_index(["standardize_weights", "norm"])["n"].eq(2).all()


def test_a_factor_without_a_config_column_reads_the_one_value_the_others_set():
    """While only runs with the config's value have finished, the report carries no column for the
    factor (it does not vary): the runs that did not set it ran with the value the others set."""
    factors = ["optim.base_batch", "optim.warmup_epochs"]
    rows = [run(n, 0, v, v, **{"optim.base_batch": 32}) for n, v in (("bn", 20), ("gn", 30))]
    rows += [run(n, 0, v, v, **{"optim.base_batch": 32, "optim.warmup_epochs": 0}) for n, v in (("bn", 21), ("gn", 29))]
    table = recipe_table(pd.DataFrame(rows), factors)
    assert set(table["optim.warmup_epochs"]) == {"0"} and table["n"].eq(2).all()


def test_factors_must_be_a_list_of_keys():
    check_spec({"factors": ["optim.base_batch"]})
    with pytest.raises(SpecError, match=r"^report\.factors = 'optim\.base_batch': must be a list"):
        check_spec({"factors": "optim.base_batch"})


# ------------------------------------------------------------------------- recipe options: warmup, WS
def test_warmup_ramps_linearly_then_follows_the_schedule():
    from src.schedules import cosine, warmed_up

    assert warmed_up(cosine, 0.0, warmup=0.1) == 0.0
    assert warmed_up(cosine, 0.05, warmup=0.1) == pytest.approx(0.5 * 0.5 * (1 + math.cos(math.pi * 0.05)))
    assert warmed_up(cosine, 0.5, warmup=0.1) == pytest.approx(0.5)
    assert warmed_up(cosine, 0.3, warmup=0.0) == cosine(0.3)


def test_weight_standardization_applies_to_every_norm(compose_cfg, tmp_path):
    import torch

    from src.norms import WeightStandardization
    from src.training.single import train

    fast = ("dataset=digits", "model.widths=[8,16]", "logger=none", "epochs=1", "batch=16")
    record = train(compose_cfg(*fast, "norm=bn", "standardize_weights=true"), tmp_path / "bn_ws")
    assert record["status"] == "completed"
    cfg = compose_cfg(*fast, "norm=bn", "standardize_weights=true")
    from hydra.utils import instantiate

    from src.norms import standardize_convolutions

    norm = instantiate(cfg.norm)
    net = instantiate(cfg.model, input_shape=(1, 8, 8), num_classes=10, norm=norm)
    standardize_convolutions(standardize_convolutions(net))  # twice: each conv standardized once
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(len(m.parametrizations.weight) == 1 for m in convs)
    assert all(isinstance(m.parametrizations.weight[0], WeightStandardization) for m in convs)
    w = convs[0].weight.flatten(1)
    torch.testing.assert_close(w.mean(1), torch.zeros(len(w)), atol=1e-5, rtol=0)


def test_a_negative_warmup_names_the_key(compose_cfg, tmp_path):
    from src.training.single import train

    with pytest.raises(ValueError, match=r"optim\.warmup_epochs=-1 is invalid"):
        train(compose_cfg("dataset=digits", "logger=none", "epochs=1", "optim.warmup_epochs=-1"), tmp_path)


# ------------------------------------------------------------- stage 3: padding × norm, GN group size
STAGE3 = ["dataset.augment", "norm.layer.min_group_size"]
GROUP = "norm.layer.min_group_size"
# validation error per seed: (norm, padding, min_group_size or None for the default) -> [seed 0, seed 1]
STAGE3_ERRORS = {
    ("bn", "crop_flip", None): [30.0, 31.0],
    ("bn", "crop_flip_reflect", None): [29.0, 29.5],
    ("gn", "crop_flip", None): [34.0, 35.0],
    ("gn", "crop_flip_reflect", None): [30.0, 31.0],
    ("gn", "crop_flip", 4): [33.0, 34.0],
    ("in", "crop_flip", None): [43.0, 44.0],
    ("in", "crop_flip_reflect", None): [35.0, 36.0],
}


def stage3_record(norm: str, padding: str, seed: int, val: float | None, group: int | None = None) -> dict:
    """A record shaped like src.train's: gn's config has min_group_size (2 unless overridden), bn's and
    in's have none; the default is never in the overrides; ``val`` None: a run stopped before finishing."""
    overrides = [f"norm={norm}", f"dataset.augment={padding}", f"seed={seed}"]
    overrides += [f"{GROUP}={group}"] if group else []
    norm_config: dict = {"name": norm}
    if norm == "gn":
        norm_config["layer"] = {"groups": 32, "min_group_size": group or 2}
    config = {
        "study": "pilot3",
        "batch": 32,
        "seed": seed,
        "epochs": 2,
        "norm": norm_config,
        "dataset": {"augment": padding},
        "report": {"title": "padding", "factors": STAGE3, "claims": []},
    }
    metrics = {} if val is None else {"val_error": val, "best_val_error": val, "test_error": val + 1, "train_loss": 0.3}
    return {
        "status": "running" if val is None else "completed",
        "study": "pilot3",
        "overrides": overrides,
        "norm": norm,
        "batch": 32,
        "dataset": "cifar10_jpeg",
        "model": "resnet8",
        "seed": seed,
        "epochs": 2,
        "config": config,
        "started_at": "2026-01-01T00:00:00+00:00",
        "finished_at": None if val is None else f"2026-01-01T00:0{seed}:00+00:00",
        "lr": 0.1,
        "metrics": metrics,
        "timing": {"steps_per_second": 10.0},
        "environment": {"device": "cpu", "git_commit": "abc123", "machine": {"hostname": "testhost"}},
    }


def stage3_records() -> list[dict]:
    records = [
        stage3_record(norm, padding, seed, val, group)
        for (norm, padding, group), values in STAGE3_ERRORS.items()
        for seed, val in enumerate(values)
    ]
    # gn with 4 channels a group under reflection padding: stopped by the timeout, never completed
    return records + [stage3_record("gn", "crop_flip_reflect", seed, None, 4) for seed in (0, 1)]


def stage3_run_set(tmp_path):
    """The run set and counted runs as the report builds them: the loader's config columns plus the
    factors' columns from the records' resolved configs (src.report.__main__)."""
    from src.report.config_columns import with_config_columns
    from src.report.load import load_run_set
    from src.run.records import RECORD_FILE

    for record in stage3_records():
        path = tmp_path / "runs" / ",".join(record["overrides"]) / RECORD_FILE
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record))
    run_set = load_run_set([tmp_path / "runs"])
    records = [record for kept in run_set.records.values() for record in kept]
    return run_set, with_config_columns(run_set.runs, records, STAGE3)


def test_the_default_group_size_is_read_from_the_resolved_config(tmp_path):
    """gn's default min_group_size (2) is in no override: it is read from the run's config; bn and in have
    no such key and stay blank for it."""
    _, runs = stage3_run_set(tmp_path)
    resolved = recipe_runs(runs, STAGE3).set_index(["norm", "dataset.augment", "seed"])
    assert resolved.loc[("gn", "crop_flip_reflect", 0), GROUP] == "2"
    assert set(resolved.loc["gn", GROUP]) == {"2", "4"}
    assert set(resolved.loc["bn", GROUP]) == {ABSENT} and set(resolved.loc["in", GROUP]) == {ABSENT}
    table = recipe_table(runs, STAGE3)
    assert set(table[GROUP]) == {"2", "4"}  # never "2.0", "–" or "·" for a recipe
    assert table.loc[table["norm"] == "bn", "norm_lacks"].eq(GROUP).all()
    text = render_recipes(table, STAGE3)
    assert "| 1 | crop_flip_reflect | 2 |" in text and "2.0" not in text
    # the value from the config wins over the overrides, and a whole float reads as an integer
    assert as_value(2.0) == "2" and as_value("true") == "True" and as_value(float("nan")) == ABSENT


def test_cells_never_pool_runs_of_different_recipes(tmp_path):
    """bn's crop_flip and crop_flip_reflect runs are two cells of two runs each, never one of four: in the
    recipe tables and in the report's per-norm summary tables alike."""
    from src.report.slices import by_setting
    from src.report.tables import summarize

    _, runs = stage3_run_set(tmp_path)
    table = recipe_table(runs, STAGE3)
    bn = table[(table["norm"] == "bn") & (table[GROUP] == "2")].set_index("dataset.augment")
    assert bn.loc["crop_flip", "n"] == 2 and bn.loc["crop_flip", "val_error"] == pytest.approx(30.5)
    assert bn.loc["crop_flip", "val_error_sd"] == pytest.approx(0.7071, abs=1e-4)
    assert bn.loc["crop_flip_reflect", "val_error"] == pytest.approx(29.25)
    gn = table[table["norm"] == "gn"].set_index(["dataset.augment", GROUP])
    assert gn.loc[("crop_flip", "2"), "val_error"] == 34.5 and gn.loc[("crop_flip", "4"), "val_error"] == 33.5
    summary = summarize(by_setting(runs, STAGE3))
    assert summary["n"].eq(2).all() and len(summary) == len(STAGE3_ERRORS)
    assert "resnet8 · dataset.augment=crop_flip" in set(summary["slice"])  # bn, in: no min_group_size
    assert "resnet8 · dataset.augment=crop_flip · norm.layer.min_group_size=2" in set(summary["slice"])
    assert set(summary["model"]) == {"resnet8"} and {"dataset.augment", "norm.layer.min_group_size"} <= set(summary)


def test_padding_by_norm_table_costs_and_grid(tmp_path):
    run_set, runs = stage3_run_set(tmp_path)
    section, files = recipe_report(runs, STAGE3, run_set.skipped, "pilot3")
    by_norm = pd.read_csv(io.StringIO(files["recipe_by_norm.csv"]), dtype={GROUP: str}, keep_default_na=False)
    cost = by_norm.set_index(["dataset.augment", "norm"])["cost"].astype(float)
    assert cost[("crop_flip", "bn")] == pytest.approx(1.25) and cost[("crop_flip_reflect", "bn")] == 0
    assert cost[("crop_flip", "gn")] == pytest.approx(4.0) and cost[("crop_flip", "in")] == pytest.approx(8.0)
    assert set(by_norm.loc[by_norm["norm"] == "gn", GROUP]) == {"2"}  # the base value, gn's default
    assert set(by_norm.loc[by_norm["norm"] != "gn", GROUP]) == {""}  # bn and in do not have it
    assert "| crop_flip | 30.50 ± 0.71 (2) | 34.50 ± 0.71 (2) | 43.50 ± 0.71 (2) | 36.17 |" in section
    assert "| crop_flip | +1.25 | +4.00 | +8.00 |" in section
    assert f"| 29.25 ± 0.35 (2) | 30.50 ± 0.71 (2) | 35.50 ± 0.71 (2) | {(29.25 + 30.5 + 35.5) / 3:.2f} |" in section
    assert "| crop_flip_reflect | best | best | best |" in section
    # the GN grid: completed cells with their difference to min_group_size 2; the unfinished cell named
    # (its 95 % Welch interval from the two cells' SDs: 2 runs each, df 2)
    assert "| gn | 4 | 33.50 ± 0.71 (2) [-1.00 (-4.04, 2.04)] | not finished (2 runs) |" in section
    assert "- gn, `dataset.augment` = crop_flip_reflect, `norm.layer.min_group_size` = 4: 2 runs" in section
    assert "Choice rule: one recipe for every norm" in section
    grid = pd.read_csv(io.StringIO(files["recipe_grid.csv"]))
    assert grid.loc[grid["n"] == 0, "not_counted"].tolist() == [2]
    four = grid[(grid["value"] == 4) & (grid["dataset.augment"] == "crop_flip")].iloc[0]
    assert (four["vs_base"], four["vs_base_low"], four["vs_base_high"]) == pytest.approx(
        (-1.0, -4.0424, 2.0424), abs=1e-4
    )


def test_the_report_writes_the_padding_figure_and_rebuilds_from_its_records(tmp_path):
    from src.report.__main__ import main

    stage3_run_set(tmp_path)  # writes the records under tmp_path/runs
    assert main([str(tmp_path / "runs"), "--out", str(tmp_path / "out")]) == 0
    study = tmp_path / "out" / "pilot3"
    png, svg = (study / "padding_by_norm.png").read_bytes(), (study / "padding_by_norm.svg").read_bytes()
    assert png.startswith(b"\x89PNG") and b"<svg" in svg
    summary = (study / "summary.md").read_text()
    assert "![validation error by `dataset.augment` and norm](padding_by_norm.png)" in summary
    first = (study / "recipe_by_norm.csv").read_text()
    assert main([str(study), "--out", str(tmp_path / "again")]) == 0  # from runs.jsonl alone
    assert (tmp_path / "again" / "pilot3" / "recipe_by_norm.csv").read_text() == first
    assert "not finished (2 runs)" in (tmp_path / "again" / "pilot3" / "summary.md").read_text()


def test_the_figure_is_the_same_for_the_same_runs(tmp_path):
    from src.report.recipe_plots import factor_by_norm_figure

    _, runs = stage3_run_set(tmp_path)
    resolved = recipe_runs(runs, STAGE3)
    at_base = resolved[resolved[GROUP].isin(["2", ABSENT])]
    png, svg = factor_by_norm_figure(at_base, "dataset.augment", "pilot3", {GROUP: "2"})
    assert png.startswith(b"\x89PNG") and svg.startswith(b"<?xml")
    assert svg == factor_by_norm_figure(at_base, "dataset.augment", "pilot3", {GROUP: "2"})[1]


def test_a_top_level_key_a_norm_never_chose_is_not_its_factor():
    """``norm_groups`` is in bn's resolved config (32) but bn never set it: bn's runs join every
    ``norm_groups`` recipe, as they did when the factors were read from the overrides alone."""
    runs = pilot()
    runs["norm_groups"] = [32.0 if n == "bn" else g for n, g in zip(runs["norm"], [0, 0, 8, 32, 8] * 2, strict=True)]
    table = recipe_table(runs, FACTORS)
    assert table.loc[table["norm"] == "bn", "norm_lacks"].eq("norm_groups").all()
    ranks = table.drop_duplicates(FACTORS).set_index(FACTORS)["recipe_rank"]
    assert ranks[("32", "8")] == 1 and ranks[("128", "8")] == 2 and ranks[("32", "32")] == 3
