"""Claim verdicts on synthetic studies: direction vs size, equivalence, flatness, the convergence gate,
the seeds still needed, runs not counted, and reports regenerated from archived records or runs.csv."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats

from src.report.__main__ import main as report_main
from src.report.claims import NOT_ASSESSABLE, NOT_REPRODUCED, REPRODUCED, UNDECIDED, evaluate_claims
from src.report.load import load_run_set
from src.report.spec import SpecError
from src.report.stats import CellModel, power_one_sided, seeds_needed
from src.run.records import RECORD_FILE, RUNS_FILE

from .test_report import grid, make_record, runs_of, write_records

RISES = {"id": "bn_small_batch", "kind": "difference", "norm": "bn", "batches": [2, 32], "at_least": 2.0}
CLOSE = {"id": "bn_close_to_gn", "kind": "equivalent", "norms": ["bn", "gn"], "batch": 32, "within": 0.5}


def test_a_rise_of_one_point_reads_direction_reproduced_and_size_not_reproduced(tmp_path):
    """BN rises by 1 ± 0.3 (sd of the runs): clearly above 0, clearly below the 2-point threshold."""
    errors = {("bn", 2): [11.3, 10.7, 11.0, 11.4, 10.6], ("bn", 32): [10.0, 10.3, 9.7, 9.6, 10.4]}
    [result] = evaluate_claims(runs_of(grid("s", errors), tmp_path), {"budget": "fixed", "claims": [RISES]})
    assert result.direction.verdict == REPRODUCED
    assert result.verdict == NOT_REPRODUCED and result.sizes[0].verdict == NOT_REPRODUCED
    assert result.estimate.value == pytest.approx(1.0)
    welch = stats.ttest_ind(errors[("bn", 2)], errors[("bn", 32)], equal_var=False)
    assert result.model_df == 8 and result.estimate.df == pytest.approx(welch.df)
    row = result.as_row()
    assert (row["direction_verdict"], row["size_verdict"], row["verdict"]) == (
        REPRODUCED,
        NOT_REPRODUCED,
        NOT_REPRODUCED,
    )


def test_the_interval_uses_each_cells_own_variance_and_the_pooled_model_is_the_robustness_column(tmp_path):
    errors = {
        ("bn", 2): [11.0, 12.0],
        ("bn", 32): [10.0, 10.5],
        ("gn", 2): [10.2, 10.9, 10.4],
        ("gn", 32): [10.1, 10.6, 10.3],
    }
    [result] = evaluate_claims(runs_of(grid("s", errors), tmp_path), {"budget": "fixed", "claims": [RISES]})
    model = CellModel({key: values for key, values in errors.items()})
    own = model.welch_contrast({("bn", 2): 1, ("bn", 32): -1})
    pooled = model.contrast({("bn", 2): 1, ("bn", 32): -1})
    assert (result.estimate.low, result.estimate.high) == pytest.approx((own.low, own.high))
    assert result.estimate.method == "welch" and result.estimate.df == pytest.approx(1.0, abs=0.5)
    assert result.model_df == 10 - 4 and result.sizes[0].pooled.df == 6
    assert (result.sizes[0].pooled.low, result.sizes[0].pooled.high) == pytest.approx((pooled.low, pooled.high))


def test_equivalence_is_two_sided_so_a_far_worse_gn_is_not_as_good_as_bn(tmp_path):
    errors = {("bn", 32): [38.0, 39.0, 38.5], ("gn", 32): [51.0, 52.0, 51.5]}
    runs = runs_of(grid("s", errors), tmp_path)
    # no train-loss gap, so the gate does not hide the verdict
    [result] = evaluate_claims(runs, {"budget": "fixed", "claims": [CLOSE]})
    assert result.verdict == NOT_REPRODUCED
    same = runs_of(
        grid("s", {("bn", 32): [20.0, 20.2, 20.1, 19.9], ("gn", 32): [20.1, 20.0, 20.2, 20.1]}), tmp_path / "b"
    )
    assert evaluate_claims(same, {"budget": "fixed", "claims": [CLOSE]})[0].verdict == REPRODUCED


def test_flatness_is_a_tost_of_every_batch_against_the_largest(tmp_path):
    batches = [2, 4, 8, 16, 32]
    noise = [-0.15, 0.0, 0.15]
    flat = {("gn", b): [20.0 + e + 0.05 * i for e in noise] for i, b in enumerate(batches)}
    claim = {"kind": "flat", "norm": "gn", "within": 1.0}
    [result] = evaluate_claims(runs_of(grid("s", flat), tmp_path / "a"), {"budget": "fixed", "claims": [claim]})
    assert result.verdict == REPRODUCED and [t.test for t in result.sizes] == ["within"] * 4
    assert [t.label for t in result.sizes] == [f"gn@{b} − gn@32" for b in (2, 4, 8, 16)]
    assert result.sizes[0].estimate.value == pytest.approx(-0.2)
    # only the middle batch is off: a slope or an endpoint test would miss it, a test per batch does not
    bump = {**flat, ("gn", 8): [23.0 + e for e in noise]}
    [result] = evaluate_claims(runs_of(grid("s", bump), tmp_path / "b"), {"budget": "fixed", "claims": [claim]})
    assert result.verdict == NOT_REPRODUCED and result.sizes[2].verdict == NOT_REPRODUCED
    assert any("Holm" in note for note in result.notes)


def test_an_undecided_claim_gives_the_seeds_per_cell_that_would_decide_it(tmp_path):
    errors = {("gn", 2): [10.0, 11.0, 10.2], ("bn", 2): [10.6, 11.5, 10.9]}
    less = {"kind": "less", "norms": ["gn", "bn"], "batch": 2}
    [result] = evaluate_claims(runs_of(grid("s", errors), tmp_path), {"budget": "fixed", "claims": [less]})
    assert result.verdict == UNDECIDED
    sd = math.sqrt((np.var(errors[("gn", 2)], ddof=1) + np.var(errors[("bn", 2)], ddof=1)) / 2)
    effect = result.direction.estimate.value
    expected = seeds_needed(lambda n: power_one_sided(effect, sd, 2.0, n, 2, 0.025))
    assert result.seeds == expected and expected > 3
    assert result.as_row()["seeds_per_cell_needed"] == expected


# --------------------------------------------------------------------------- convergence gate


def curve_csv(val: list[float], loss: list[float]) -> str:
    """metrics.csv as Lightning's CSVLogger writes it: one row per logging call, test error at the end."""
    lines = ["epoch,step,test/error,train/loss,val/error"]
    for epoch, (v, t) in enumerate(zip(val, loss, strict=True)):
        lines += [f"{epoch},{100 * (epoch + 1)},,,{v}", f"{epoch},{100 * (epoch + 1)},,{t},"]
    lines.append(f"{len(val)},{100 * len(val)},{val[-1]},,")
    return "\n".join(lines) + "\n"


def gated_study(root: Path, curves: bool = True) -> Path:
    """BN converged; GN ends at BN's test error with a high train loss and a still-falling curve."""
    records = []
    for seed in range(3):
        bn = make_record("gate", "bn", 32, seed, 20.0 + 0.1 * seed)
        gn = make_record("gate", "gn", 32, seed, 20.05 + 0.1 * seed)
        bn["metrics"]["train_loss"], gn["metrics"]["train_loss"] = 0.30, 0.60
        records += [bn, gn]
    write_records(root, records)
    if curves:
        for path in root.rglob(RECORD_FILE):
            record = json.loads(path.read_text())
            if record["norm"] == "bn":
                text = curve_csv([30.0, 24.0, 20.6, 20.4, 20.2, 20.3], [1.2, 0.6, 0.4, 0.33, 0.31, 0.30])
            else:
                text = curve_csv([40.0, 33.0, 28.0, 24.5, 22.0, 20.0], [1.6, 1.2, 0.95, 0.8, 0.68, 0.60])
            (path.parent / "metrics.csv").write_text(text)
    return root


def test_the_per_cell_level_check_is_shown_but_never_gates(tmp_path):
    run_set = load_run_set([gated_study(tmp_path / "m")])
    assert len(run_set.curves) == 6
    spec = {"budget": "fixed", "claims": [CLOSE]}
    [result] = evaluate_claims(run_set.runs, spec, run_set.curves, run_set.skipped)
    assert result.verdict == REPRODUCED and result.gate.undertrained == ["gn@32"]
    text = " ".join(result.gate.lines)
    assert "gn@32: validation error fell +8.00 over the last 3 epochs (> 0.5: still improving)" in text
    assert result.as_row()["level_check"] == "failed" and result.as_row()["stability"] == "fixed budget"
    assert result.verdict_shown == "reproduced at 2 epochs (fixed budget)"


def schedules(errors: dict[tuple[str, int, int], list[float]]) -> list[dict]:
    """Records for {(norm, batch, epochs): [error per seed]}."""
    records = []
    for (norm, batch, epochs), values in errors.items():
        for seed, error in enumerate(values):
            record = make_record("g", norm, batch, seed, error, epochs=epochs)
            record["config"]["epochs"] = epochs
            record["overrides"].append(f"epochs={epochs}")
            records.append(record)
    return records


NOISE = [-0.2, -0.1, 0.0, 0.1, 0.2, -0.15, 0.15, 0.05]
LESS = {"id": "gn_beats_bn", "kind": "less", "norms": ["gn", "bn"], "batch": 2, "where": {"epochs": 16}}


def gap(at16: float, at8: float, noise: list[float] = NOISE) -> dict[tuple[str, int, int], list[float]]:
    return {
        ("bn", 2, 16): [30.0 + e for e in noise],
        ("gn", 2, 16): [30.0 - at16 + e for e in noise],
        ("bn", 2, 8): [35.0 + e for e in noise],
        ("gn", 2, 8): [35.0 - at8 + e for e in noise],
    }


def test_the_stability_gate_passes_a_contrast_that_no_longer_moves(tmp_path):
    [result] = evaluate_claims(runs_of(schedules(gap(3.0, 2.8)), tmp_path), {"claims": [LESS]})
    assert result.stability.status == "passed" and result.verdict == REPRODUCED
    assert "θ(16) − θ(8) = +0.20" in result.stability.lines[0]


def test_the_stability_gate_fails_a_contrast_still_moving_by_more_than_its_margin(tmp_path):
    [result] = evaluate_claims(runs_of(schedules(gap(3.0, 0.5)), tmp_path), {"claims": [LESS]})
    assert result.stability.status == "failed" and result.verdict == NOT_ASSESSABLE
    assert result.verdict_text == "not assessable: contrast still moving between 8 and 16 epochs"
    assert result.size_verdict == REPRODUCED  # what the test alone said: the gate is what stops it


def test_the_stability_gate_is_unsettled_with_too_few_seeds_and_says_how_many(tmp_path):
    wide = [-2.0, 1.5, 0.5]
    [result] = evaluate_claims(runs_of(schedules(gap(5.0, 5.0, wide)), tmp_path), {"claims": [LESS]})
    assert result.stability.status == "unsettled" and result.verdict == NOT_ASSESSABLE
    assert result.stability.seeds and result.stability.seeds > 3 and result.seeds >= result.stability.seeds


def test_a_missing_half_length_arm_blocks_the_verdict_and_single_norm_claims_are_gated_too(tmp_path):
    errors = {key: values for key, values in gap(3.0, 3.0).items() if key[2] == 16}
    rises = {"kind": "difference", "norm": "bn", "batches": [2, 2], "at_least": 0.0, "where": {"epochs": 16}}
    results = evaluate_claims(runs_of(schedules(errors), tmp_path), {"claims": [LESS, rises]})
    assert [r.stability.status for r in results] == ["missing arm", "missing arm"]
    assert all(r.verdict == NOT_ASSESSABLE for r in results)
    assert results[0].verdict_text == "not assessable: no 8-epoch arm to check the contrast's stability"


def test_a_claim_may_waive_the_stability_gate_with_a_reason(tmp_path):
    waived = {**LESS, "convergence": {"waived": "a claim about training speed"}}
    [result] = evaluate_claims(runs_of(schedules(gap(3.0, 0.5)), tmp_path), {"claims": [waived]})
    assert result.stability.status == "waived" and result.verdict == REPRODUCED


def test_a_fixed_budget_claim_shows_how_far_its_contrast_moved_but_is_not_gated_by_it(tmp_path):
    fixed = {**LESS, "budget": "fixed"}
    [result] = evaluate_claims(runs_of(schedules(gap(3.0, 0.5)), tmp_path / "a"), {"claims": [fixed]})
    assert result.stability.status == "fixed budget" and result.verdict == REPRODUCED
    assert result.stability.lines[0] == "a statement about 16 epochs exactly: no stability gate"
    assert result.stability.lines[1].startswith("bn@2 epochs=16 − gn@2 epochs=16: θ(16) − θ(8) = +2.50 [2.29, 2.71]")
    assert result.stability.lines[1].endswith("against ±1: failed (shown, does not gate)")
    alone = {key: values for key, values in gap(3.0, 0.5).items() if key[2] == 16}  # no 8-epoch arm: nothing shown
    [result] = evaluate_claims(runs_of(schedules(alone), tmp_path / "b"), {"claims": [fixed]})
    assert result.verdict == REPRODUCED and len(result.stability.lines) == 1


def test_worst_compares_the_norm_with_every_other(tmp_path):
    errors = {("bn", 32): [20.0, 20.2, 20.1], ("gn", 32): [20.5, 20.4, 20.6], ("in", 32): [25.0, 25.2, 25.1]}
    worst = {"kind": "worst", "norm": "in", "batch": 32}
    [result] = evaluate_claims(runs_of(grid("s", errors), tmp_path / "a"), {"budget": "fixed", "claims": [worst]})
    assert result.verdict == REPRODUCED and [t.label for t in result.sizes] == ["in@32 − bn@32", "in@32 − gn@32"]
    errors[("ln", 32)] = [26.0, 26.2, 26.1]  # IN is not the worst once LN is worse
    [result] = evaluate_claims(runs_of(grid("s", errors), tmp_path / "b"), {"budget": "fixed", "claims": [worst]})
    assert result.verdict == NOT_REPRODUCED and result.sizes[-1].verdict == "reversed"


def test_holm_across_a_studys_claims_can_undo_a_marginal_reproduced(tmp_path):
    errors = {("bn", 2): [11.2, 10.4, 12.1, 11.2], ("bn", 32): [10.0, 9.6, 10.4, 9.8]}
    rises = {"id": "a", "kind": "difference", "norm": "bn", "batches": [2, 32], "at_least": 0.0}
    alone = evaluate_claims(runs_of(grid("s", errors), tmp_path / "a"), {"budget": "fixed", "claims": [rises]})
    assert alone[0].verdict == REPRODUCED and alone[0].p_study == pytest.approx(alone[0].p)
    others = [{**rises, "id": f"x{i}", "at_least": 1.0 + 0.1 * i} for i in range(3)]  # undecided: large p
    family = evaluate_claims(
        runs_of(grid("s", errors), tmp_path / "b"), {"budget": "fixed", "claims": [rises, *others]}
    )
    p = family[0].p
    assert 0.025 / 4 < p < 0.025, p  # the data make this claim marginal by construction
    assert family[0].verdict == UNDECIDED and family[0].p_study == pytest.approx(min(1.0, 4 * p))
    assert any("Holm's correction across the study's 4 claims" in note for note in family[0].notes)
    # what it would take: the seeds at which the observed effect survives the correction (Bonferroni's
    # level α/2/4, which Holm never asks more than), named like any undecided claim's
    assert family[0].holm_seeds and family[0].seeds == family[0].holm_seeds > 4
    assert family[0].as_row()["seeds_per_cell_needed"] == family[0].holm_seeds
    assert alone[0].holm_seeds is None


def test_a_duplicate_claim_kind_name_raises():
    from src.report.kinds import ClaimKind, register

    with pytest.raises(ValueError, match="'flat' is already registered"):

        @register("flat")
        class Another(ClaimKind):
            pass


# --------------------------------------------------------------------------- runs not counted, archives


def test_diverged_runs_are_counted_in_the_claims_of_their_cells(tmp_path):
    root = tmp_path / "m"
    records = grid(
        "dv", {("bn", 2): [11.0, 11.4], ("bn", 32): [10.0, 10.2]}, report={"budget": "fixed", "claims": [RISES]}
    )
    records.append(make_record("dv", "bn", 2, 7, 0.0, status="diverged", error="loss is nan at step 9"))
    write_records(root, records)
    out = tmp_path / "results"
    assert report_main([str(root), "--out", str(out)]) == 0
    claims = pd.read_csv(out / "dv" / "claims.csv")
    assert list(claims.not_counted) == [1]
    text = (out / "dv" / "claims.md").read_text()
    assert "runs of this claim's cells not in the means: 1 diverged in bn@2" in text
    assert "diverged" in pd.read_csv(out / "dv" / "not_counted.csv").status.tolist()


def test_kept_records_regenerate_the_same_tables_and_runs_csv_reports_say_so(tmp_path):
    root = gated_study(tmp_path / "m")
    spec = {"budget": "fixed", "claims": [CLOSE, RISES], "median_last": 5}
    for path in root.rglob(RECORD_FILE):
        record = json.loads(path.read_text())
        record["config"]["report"] = spec
        path.write_text(json.dumps(record))
    first, second, third = tmp_path / "r1", tmp_path / "r2", tmp_path / "r3"
    assert report_main([str(root), "--out", str(first)]) == 0
    kept = [json.loads(line) for line in (first / "gate" / RUNS_FILE).read_text().splitlines()]
    assert len(kept) == len(list(root.rglob(RECORD_FILE))) == 6
    assert all(len(record["curve"]) == 6 for record in kept)  # schema 0 records: metrics.csv went in
    assert not (first / "gate" / "records").exists()
    # the study's directory alone (no multirun, no metrics.csv) rebuilds every file in place
    copy = second / "gate"
    copy.mkdir(parents=True)
    (copy / RUNS_FILE).write_bytes((first / "gate" / RUNS_FILE).read_bytes())
    assert report_main([str(copy), "--out", str(second)]) == 0
    for name in ("summary.csv", "claims.csv", "runs.csv", "summary.md", "claims.md"):
        old, new = (first / "gate" / name).read_text(), (second / "gate" / name).read_text()
        if name.endswith(".md"):  # they name the command, the report's date and the runs' source
            old, new = (_without_provenance(text) for text in (old, new))
        assert old == new, name
    assert (second / "gate" / RUNS_FILE).read_text() == (first / "gate" / RUNS_FILE).read_text()
    summary = (first / "gate" / "summary.md").read_text()
    assert "val_error_median_last5 (median validation error (%) of the last 5 epochs, as the GN paper)" in summary
    assert "median_last5" in (first / "gate" / "summary.csv").read_text()

    study_file = tmp_path / "gate.yaml"
    study_file.write_text(yaml.safe_dump({"report": spec}))
    csv = str(first / "gate" / "runs.csv")
    assert report_main(["--from-runs-csv", csv, "--claims", str(study_file), "--out", str(third)]) == 0
    text = (third / "gate" / "claims.md").read_text()
    assert "a committed runs.csv" in text and "no per-epoch curve recorded" in text
    assert not (third / "gate" / RUNS_FILE).exists()
    verdicts = pd.read_csv(third / "gate" / "claims.csv").verdict.tolist()
    assert verdicts == pd.read_csv(first / "gate" / "claims.csv").verdict.tolist()
    assert math.isfinite(pd.read_csv(third / "gate" / "claims.csv").df[0])


def _without_provenance(text: str) -> str:
    """A rendered report less the lines that name when, how and from what it was written."""
    skipped = ("- report written", "- runs read from", "- command", "- commit", "- machine", "Regenerate", "```")
    return "\n".join(line for line in text.splitlines() if not line.startswith(skipped) and "python -m" not in line)


# --------------------------------------------------------------------------- claims over any column


def test_a_claim_cell_may_name_any_recorded_column(tmp_path):
    """Schedule length (epochs), a config key (optim.warmup_epochs) and the model (across slices)."""
    records = []
    for epochs, errors in ((12, [24.0, 24.4, 24.2]), (24, [21.0, 21.3, 21.1])):
        for seed, error in enumerate(errors):
            record = make_record("any", "gn", 8, seed, error)
            record["epochs"] = record["config"]["epochs"] = epochs
            record["overrides"] = [*record["overrides"], f"epochs={epochs}"]
            record["config"]["optim"] = {"warmup_epochs": 0 if epochs == 12 else 2}
            records.append(record)
    for model, errors in (("resnet20", [20.0, 20.2, 20.1]), ("resnet56", [18.0, 18.1, 18.3])):
        for seed, error in enumerate(errors):
            record = make_record("any", "bn", 32, seed, error, model=model)
            record["overrides"] = [*record["overrides"], f"model={model}"]
            records.append(record)
    runs = runs_of(records, tmp_path)
    assert "optim.warmup_epochs" in runs  # a config key the sweep varied is a column
    longer = {
        "kind": "less",
        "a": {"norm": "gn", "batch": 8, "epochs": 24},
        "b": {"norm": "gn", "batch": 8, "epochs": 12},
    }
    warmup = {
        "kind": "difference",
        "where": {"norm": "gn"},
        "a": {"optim.warmup_epochs": 0},
        "b": {"optim.warmup_epochs": 2},
        "at_least": 1.0,
    }
    deeper = {"kind": "less", "a": {"model": "resnet56", "norm": "bn"}, "b": {"model": "resnet20", "norm": "bn"}}
    results = evaluate_claims(runs, {"budget": "fixed", "claims": [longer, warmup, deeper]})
    sliced = [r for r in results if r.model == "small_cnn"]  # the slice the gn runs are in
    assert sliced[0].statement == "gn@8 epochs=24 < gn@8 epochs=12" and sliced[0].verdict == REPRODUCED
    [warm] = [r for r in sliced if r.kind == "difference"]
    assert warm.verdict == REPRODUCED and warm.sizes[0].estimate.value == pytest.approx(24.2 - 21.133333, abs=1e-4)
    [depth] = [r for r in results if r.model == "(all)"]  # names the model: compared across slices
    assert depth.verdict == REPRODUCED and depth.direction.estimate.value == pytest.approx(20.1 - 18.133333, abs=1e-4)
    # the shorthands still mean (norm, batch) cells, and their model is today's
    shorthand = evaluate_claims(
        runs, {"budget": "fixed", "claims": [{"kind": "less", "norms": ["bn", "gn"], "batch": 8}]}
    )
    assert all(str(c) in ("bn@8", "gn@8") for r in shorthand for t in r.tests for c in t.weights)


def test_a_bad_claim_cell_fails_with_one_line(tmp_path):
    runs = runs_of(grid("s", {("bn", 2): [30.0, 31.0], ("bn", 32): [20.0, 21.0]}), tmp_path)
    with pytest.raises(SpecError, match=r"report.claims\[0\].a.epochs = \[1, 2\]: must be a single value"):
        evaluate_claims(
            runs, {"budget": "fixed", "claims": [{"kind": "less", "a": {"epochs": [1, 2]}, "b": {"epochs": 3}}]}
        )
    with pytest.raises(SpecError, match=r"report.claims\[0\].where = 3: must be a mapping column"):
        evaluate_claims(runs, {"budget": "fixed", "claims": [{"kind": "flat", "norm": "bn", "within": 1, "where": 3}]})


def test_report_where_judges_every_claim_on_the_studys_main_arm(tmp_path):
    """16-epoch cells: gn − bn = +1; 8-epoch cells: +5. ``report.where: {epochs: 16}`` keeps the claim to
    the 16-epoch arm; without it the claim's cell averages both schedules (+3)."""
    errors = {
        16: {"bn": [10.0, 10.4, 9.6], "gn": [11.0, 11.4, 10.6]},
        8: {"bn": [14.0, 14.4, 13.6], "gn": [19.0, 19.4, 18.6]},
    }
    records = []
    for epochs, by_norm in errors.items():
        for norm, values in by_norm.items():
            for seed, error in enumerate(values):
                record = make_record("s", norm, 32, seed, error, epochs=epochs)
                record["overrides"] = [*record["overrides"], f"epochs={epochs}"]
                records.append(record)
    runs = runs_of(records, tmp_path)
    claim = {"id": "gap", "kind": "greater", "norms": ["gn", "bn"], "batch": 32}
    [main_arm] = evaluate_claims(runs, {"where": {"epochs": 16}, "claims": [claim]})
    assert main_arm.estimate.value == pytest.approx(1.0) and "epochs=16" in main_arm.statement
    [own] = evaluate_claims(runs, {"where": {"epochs": 16}, "claims": [{**claim, "where": {"epochs": 8}}]})
    assert own.estimate.value == pytest.approx(5.0)  # the claim's own where wins
    [pooled] = evaluate_claims(runs, {"budget": "fixed", "claims": [claim]})
    assert pooled.estimate.value == pytest.approx(3.0)
    with pytest.raises(SpecError, match=r"^report.where = \[16\]: must be a mapping"):
        evaluate_claims(runs, {"where": [16], "claims": [claim]})
