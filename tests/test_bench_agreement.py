"""Two runs of ``make bench`` side by side: every ratio matched on its table's keys, ±5 % agreement."""

from pathlib import Path

import pandas as pd

from benchmarks.agreement import TABLES, agreement, compare_folders
from benchmarks.agreement import main as agreement_main


def packing(ratios: list[float]) -> pd.DataFrame:
    rows = [
        {"model": "resnet8", "norm": "bn", "batch": 2, "K": k, "runs_per_hour_ratio": r, "rel_se": 0.01}
        for k, r in zip([1, 2, 4, 8], ratios, strict=True)
    ]
    return pd.DataFrame(rows)


def test_ratios_are_matched_on_their_keys_and_the_reference_rows_are_left_out():
    keys, ratio, reference = TABLES["packing.csv"]
    first, second = packing([0.97, 1.40, 1.80, 2.00]), packing([1.04, 1.43, 1.70, 2.00]).iloc[::-1]
    table = agreement(first, second, keys, ratio, 0.05, reference)
    assert table["K"].tolist() == [1, 2, 4, 8]  # K = 1: a second one-member model, the noise floor, compared too
    expected = [round(1.04 / 0.97 - 1, 3), round(1.43 / 1.40 - 1, 3), round(1.70 / 1.80 - 1, 3), 0.0]
    assert table["rel_diff"].tolist() == expected and table["agree"].tolist() == [False, True, False, True]
    assert {"rel_se_1", "rel_se_2"} <= set(table.columns)  # each run's own precision beside its ratio
    sweeps = pd.DataFrame({"launcher": ["sequential", "parallel"], "speedup": [1.0, 1.3], "spread": [0.0, 0.02]})
    keys, ratio, reference = TABLES["sweep.csv"]
    table = agreement(sweeps, sweeps, keys, ratio, 0.05, reference)
    assert table["launcher"].tolist() == ["parallel"] and {"spread_1", "spread_2"} <= set(table.columns)


def test_folders_are_compared_table_by_table_and_the_text_counts_agreement(tmp_path: Path):
    first, second = tmp_path / "a", tmp_path / "b"
    for folder, ratios, speedup in ((first, [1.0, 1.4, 1.8, 2.0], 1.9), (second, [1.0, 1.4, 1.8, 2.2], 1.95)):
        folder.mkdir()
        packing(ratios).to_csv(folder / "packing.csv", index=False)
        pd.DataFrame({"launcher": ["sequential", "parallel"], "speedup": [1.0, speedup]}).to_csv(
            folder / "sweep.csv", index=False
        )
    (first / "throughput.csv").write_text("batch,mode,normlab_over_hand\n2,eager,1.1\n")  # only in one run
    assert sorted(compare_folders(first, second)) == ["packing.csv", "sweep.csv"]
    out = tmp_path / "agreement.txt"
    agreement_main([str(first), str(second), "--out", str(out)])
    text = out.read_text()
    assert text.startswith(f"python -m benchmarks.agreement {first} {second} --out {out}\n(20")  # command, date
    assert "packing.csv: 3 of 4 ratios agree within ±5 %" in text
    assert "sweep.csv: 1 of 1 ratios agree within ±5 %" in text
    assert text.rstrip().endswith("all tables: 4 of 5 ratios agree within ±5 %")


def test_two_files_are_compared_whatever_they_are_called(tmp_path: Path, capsys):
    packing([1.0, 1.4, 1.8, 2.0]).to_csv(tmp_path / "packing_first_run.csv", index=False)
    packing([1.0, 1.4, 1.8, 2.0]).to_csv(tmp_path / "packing.csv", index=False)
    agreement_main([str(tmp_path / "packing_first_run.csv"), str(tmp_path / "packing.csv")])
    assert "all tables: 4 of 4 ratios agree within ±5 %" in capsys.readouterr().out


def test_packing_can_be_compared_on_its_ratio_over_every_block(tmp_path: Path, capsys):
    for name, counted, every in (
        ("a.csv", [1.0, 1.4, 1.8, 2.0], [1.0, 1.4, 1.8, 2.1]),
        ("b.csv", [1.0, 1.3, 1.8, 2.2], [1.0, 1.4, 1.8, 2.1]),
    ):
        packing(counted).assign(ratio_all_blocks=every).to_csv(tmp_path / name, index=False)
    files = [str(tmp_path / "a.csv"), str(tmp_path / "b.csv")]
    agreement_main(files)
    assert "all tables: 2 of 4 ratios agree within ±5 %" in capsys.readouterr().out  # the counted blocks' ratio
    agreement_main([*files, "--packing-ratio", "ratio_all_blocks"])
    assert "all tables: 4 of 4 ratios agree within ±5 %" in capsys.readouterr().out
