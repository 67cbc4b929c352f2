"""A recipe pilot's table: recipes ranked on validation error over every norm, never on test error."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest

from src.report.recipes import recipe_table, render_recipes
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
