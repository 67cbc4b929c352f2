"""Claim verdicts on synthetic studies: direction vs size, equivalence, flatness, the convergence gate,
the seeds still needed, runs not counted, and reports regenerated from archived records or runs.csv."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd
import pytest
import yaml

from src.records import RECORD_FILE, RUNS_FILE
from src.report.__main__ import main as report_main
from src.report.claims import NOT_ASSESSABLE, NOT_REPRODUCED, REPRODUCED, UNDECIDED, evaluate_claims
from src.report.load import load_run_set
from src.report.spec import SpecError
from src.report.stats import CellModel, power_one_sided, seeds_needed

from .test_report import grid, make_record, runs_of, write_records

RISES = {"id": "bn_small_batch", "kind": "difference", "norm": "bn", "batches": [2, 32], "at_least": 2.0}
CLOSE = {"id": "bn_close_to_gn", "kind": "equivalent", "norms": ["bn", "gn"], "batch": 32, "within": 0.5}


def test_a_rise_of_one_point_reads_direction_reproduced_and_size_not_reproduced(tmp_path):
    """BN rises by 1 ± 0.3 (sd of the runs): clearly above 0, clearly below the 2-point threshold."""
    errors = {("bn", 2): [11.3, 10.7, 11.0, 11.4, 10.6], ("bn", 32): [10.0, 10.3, 9.7, 9.6, 10.4]}
    [result] = evaluate_claims(runs_of(grid("s", errors), tmp_path), {"claims": [RISES]})
    assert result.direction.verdict == REPRODUCED
    assert result.verdict == NOT_REPRODUCED and result.sizes[0].verdict == NOT_REPRODUCED
    assert result.estimate.value == pytest.approx(1.0)
    assert result.model_df == 8 and result.estimate.df == 8
    row = result.as_row()
    assert (row["direction_verdict"], row["size_verdict"], row["verdict"]) == (
        REPRODUCED,
        NOT_REPRODUCED,
        NOT_REPRODUCED,
    )


def test_the_interval_pools_the_variance_of_every_cell_of_the_study(tmp_path):
    errors = {
        ("bn", 2): [11.0, 12.0],
        ("bn", 32): [10.0, 10.5],
        ("gn", 2): [10.2, 10.9, 10.4],
        ("gn", 32): [10.1, 10.6, 10.3],
    }
    [result] = evaluate_claims(runs_of(grid("s", errors), tmp_path), {"claims": [RISES]})
    model = CellModel({key: values for key, values in errors.items()})
    expected = model.contrast({("bn", 2): 1, ("bn", 32): -1})
    assert result.model_df == 10 - 4
    assert (result.estimate.low, result.estimate.high) == pytest.approx((expected.low, expected.high))
    assert result.sizes[0].welch.df == pytest.approx(1.0, abs=0.5)  # the per-pair Welch column: ~1 df


def test_equivalence_is_two_sided_so_a_far_worse_gn_is_not_as_good_as_bn(tmp_path):
    errors = {("bn", 32): [38.0, 39.0, 38.5], ("gn", 32): [51.0, 52.0, 51.5]}
    runs = runs_of(grid("s", errors), tmp_path)
    # no train-loss gap, so the gate does not hide the verdict
    [result] = evaluate_claims(runs, {"claims": [CLOSE]})
    assert result.verdict == NOT_REPRODUCED
    same = runs_of(
        grid("s", {("bn", 32): [20.0, 20.2, 20.1, 19.9], ("gn", 32): [20.1, 20.0, 20.2, 20.1]}), tmp_path / "b"
    )
    assert evaluate_claims(same, {"claims": [CLOSE]})[0].verdict == REPRODUCED


def test_flatness_is_two_prespecified_equivalence_tests(tmp_path):
    batches = [2, 4, 8, 16, 32]
    noise = [-0.15, 0.0, 0.15]
    flat = {("gn", b): [20.0 + e + 0.05 * i for e in noise] for i, b in enumerate(batches)}
    claim = {"kind": "flat", "norm": "gn", "within": 1.0, "slope_within": 0.25}
    [result] = evaluate_claims(runs_of(grid("s", flat), tmp_path / "a"), {"claims": [claim]})
    assert result.verdict == REPRODUCED and [t.test for t in result.sizes] == ["within", "within"]
    assert result.sizes[1].estimate.value == pytest.approx(0.05)  # error vs log2(batch): +0.05 per doubling
    trend = {("gn", b): [20.0 + e + 0.6 * (4 - i) for e in noise] for i, b in enumerate(batches)}
    [result] = evaluate_claims(runs_of(grid("s", trend), tmp_path / "b"), {"claims": [claim]})
    assert result.verdict == NOT_REPRODUCED and result.sizes[1].verdict == NOT_REPRODUCED
    assert any("Holm" in note for note in result.notes)


def test_an_undecided_claim_gives_the_seeds_per_cell_that_would_decide_it(tmp_path):
    errors = {("gn", 2): [10.0, 11.0, 10.2], ("bn", 2): [10.6, 11.5, 10.9]}
    less = {"kind": "less", "norms": ["gn", "bn"], "batch": 2}
    [result] = evaluate_claims(runs_of(grid("s", errors), tmp_path), {"claims": [less]})
    assert result.verdict == UNDECIDED
    model = CellModel({key: values for key, values in errors.items()})
    effect = result.direction.estimate.value
    expected = seeds_needed(lambda n: power_one_sided(effect, model.sd, 2.0, n, 2, 0.025))
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


def test_an_undertrained_gn_is_not_assessable_never_reproduced(tmp_path):
    run_set = load_run_set([gated_study(tmp_path / "m")])
    assert len(run_set.curves) == 6
    one_sided = {"kind": "difference", "norms": ["bn", "gn"], "batch": 32, "at_most": 1.0}
    results = evaluate_claims(run_set.runs, {"claims": [CLOSE, one_sided]}, run_set.curves, run_set.skipped)
    for result in results:
        assert result.verdict == NOT_ASSESSABLE and result.verdict_text == "not assessable: gn undertrained"
        assert result.gate.undertrained == ["gn@32"]
        text = " ".join(result.gate.lines)
        assert "gn@32: validation error fell +8.00 over the last 3 epochs (> 0.5: still improving)" in text
        assert "gn@32: final train loss 0.600, 2.00× the lowest other norm's (0.300) (> 1.25×)" in text
        assert "bn@32: validation error fell +0.30 over the last 3 epochs" in text
        assert any("epochs for its curve to flatten" in line for line in result.gate.epochs)
    # without the gate, the equivalence would have read reproduced: the gate is what stops it
    ungated = evaluate_claims(
        run_set.runs, {"claims": [{**CLOSE, "convergence": {"max_val_drop": 100, "max_train_loss_ratio": 100}}]}
    )
    assert ungated[0].verdict == REPRODUCED


def test_without_curves_the_gate_says_it_could_not_check_flatness(tmp_path):
    run_set = load_run_set([gated_study(tmp_path / "m", curves=False)])
    assert run_set.curves == {}
    [result] = evaluate_claims(run_set.runs, {"claims": [CLOSE]}, run_set.curves)
    assert result.verdict == NOT_ASSESSABLE  # the train-loss check alone fails it
    assert any("no per-epoch curve recorded" in line for line in result.gate.lines)
    assert any("no curve recorded to size a schedule" in line for line in result.gate.epochs)
    same_loss = runs_of(grid("s", {("bn", 32): [20.0, 20.2, 20.1], ("gn", 32): [20.1, 20.0, 20.2]}), tmp_path / "b")
    [result] = evaluate_claims(same_loss, {"claims": [CLOSE]})
    assert result.gate.status == "partly checked" and result.verdict != NOT_ASSESSABLE


# --------------------------------------------------------------------------- runs not counted, archives


def test_diverged_runs_are_counted_in_the_claims_of_their_cells(tmp_path):
    root = tmp_path / "m"
    records = grid("dv", {("bn", 2): [11.0, 11.4], ("bn", 32): [10.0, 10.2]}, report={"claims": [RISES]})
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
    spec = {"claims": [CLOSE, RISES], "median_last": 5}
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
    results = evaluate_claims(runs, {"claims": [longer, warmup, deeper]})
    sliced = [r for r in results if r.model == "small_cnn"]  # the slice the gn runs are in
    assert sliced[0].statement == "gn@8 epochs=24 < gn@8 epochs=12" and sliced[0].verdict == REPRODUCED
    [warm] = [r for r in sliced if r.kind == "difference"]
    assert warm.verdict == REPRODUCED and warm.sizes[0].estimate.value == pytest.approx(24.2 - 21.133333, abs=1e-4)
    [depth] = [r for r in results if r.model == "(all)"]  # names the model: compared across slices
    assert depth.verdict == REPRODUCED and depth.direction.estimate.value == pytest.approx(20.1 - 18.133333, abs=1e-4)
    # the shorthands still mean (norm, batch) cells, and their model is today's
    shorthand = evaluate_claims(runs, {"claims": [{"kind": "less", "norms": ["bn", "gn"], "batch": 8}]})
    assert all(str(c) in ("bn@8", "gn@8") for r in shorthand for t in r.tests for c in t.weights)


def test_a_bad_claim_cell_fails_with_one_line(tmp_path):
    runs = runs_of(grid("s", {("bn", 2): [30.0, 31.0], ("bn", 32): [20.0, 21.0]}), tmp_path)
    with pytest.raises(SpecError, match=r"report.claims\[0\].a.epochs = \[1, 2\]: must be a single value"):
        evaluate_claims(runs, {"claims": [{"kind": "less", "a": {"epochs": [1, 2]}, "b": {"epochs": 3}}]})
    with pytest.raises(SpecError, match=r"report.claims\[0\].where = 3: must be a mapping column"):
        evaluate_claims(runs, {"claims": [{"kind": "flat", "norm": "bn", "within": 1, "where": 3}]})


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
    [pooled] = evaluate_claims(runs, {"claims": [claim]})
    assert pooled.estimate.value == pytest.approx(3.0)
    with pytest.raises(SpecError, match=r"^report.where = \[16\]: must be a mapping"):
        evaluate_claims(runs, {"where": [16], "claims": [claim]})
