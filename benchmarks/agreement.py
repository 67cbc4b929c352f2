"""Do two runs of ``make bench`` agree? Every ratio of the first run beside the second's.

    python -m benchmarks.agreement results/bench /tmp/bench_again      # two output folders of make bench

For each table both folders hold (packing.csv, embedded.csv, throughput.csv, sweep.csv), the rows are
matched on the table's key columns and ``rel_diff = second / first − 1`` is computed for its ratio
column; a ratio *agrees* when ``|rel_diff| ≤ within`` (default 5 %). The reference row, the sequential
sweep (1 by definition), is left out; packing's K = 1 row is compared (a second one-member model timed
as the packed ones are: the noise floor). Each run's own precision is shown beside its ratio where its
table records one: ``spread``, the (max − min) / median of the repetitions' ratios, or ``rel_se``, the
ratio's relative standard error; two runs can only agree to about that. ``--packing-ratio
ratio_all_blocks`` compares packing's ratio over every block (what a run with ``--tolerance`` also
records) instead of its ``runs_per_hour_ratio``.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime, timezone
from pathlib import Path

import pandas as pd

from src.run.atomic import write_text_atomic

# file → (the columns naming a row, the ratio column compared, the reference rows: their ratio is 1 by
# definition)
TABLES: dict[str, tuple[list[str], str, dict[str, object]]] = {
    "packing.csv": (["model", "norm", "batch", "K"], "runs_per_hour_ratio", {}),
    "embedded.csv": (["model", "data", "fused_step", "batch", "threads"], "normlab_over_hand", {}),
    "throughput.csv": (["batch", "mode"], "normlab_over_hand", {}),
    "sweep.csv": (["launcher"], "speedup", {"launcher": "sequential"}),
}

PRECISION = ("spread", "rel_se")  # the columns a table may record its own ratio's precision in
# key columns added to a table after runs were committed, with the value those runs had: embedded.csv
# timed the per-step loop alone before the fused loop became the default
ADDED_KEYS: dict[str, object] = {"fused_step": "off"}


def read_table(path: Path) -> pd.DataFrame:
    """A bench CSV, with :data:`ADDED_KEYS` filled where an older run lacks them."""
    frame = pd.read_csv(path)
    if "normlab_over_hand" in frame and {"model", "data"} <= set(frame.columns):
        for key, value in ADDED_KEYS.items():
            if key not in frame:
                frame[key] = value
    return frame


def agreement(
    first: pd.DataFrame,
    second: pd.DataFrame,
    keys: list[str],
    ratio: str,
    within: float = 0.05,
    reference: dict[str, object] | None = None,
) -> pd.DataFrame:
    """``keys``, the two runs' ``ratio`` (``ratio_1``, ``ratio_2``), their spreads where recorded,
    ``rel_diff`` = ratio_2 / ratio_1 − 1 and ``agree`` (|rel_diff| ≤ ``within``), one row per key present
    in both runs, leaving out the ``reference`` rows (every column equal to its value there)."""
    merged = first.merge(second, on=keys, suffixes=("_1", "_2"))
    if reference:
        merged = merged[~pd.concat([merged[k] == v for k, v in reference.items()], axis=1).all(axis=1)]
    table = pd.DataFrame({key: merged[key] for key in keys})
    table["ratio_1"], table["ratio_2"] = merged[f"{ratio}_1"], merged[f"{ratio}_2"]
    for precision in PRECISION:
        if f"{precision}_1" in merged:
            table[f"{precision}_1"], table[f"{precision}_2"] = merged[f"{precision}_1"], merged[f"{precision}_2"]
    table["rel_diff"] = (table["ratio_2"] / table["ratio_1"] - 1).round(3)
    table["agree"] = table["rel_diff"].abs() <= within
    return table.reset_index(drop=True)


def table_kind(frame: pd.DataFrame) -> str | None:
    """Which of :data:`TABLES` a bench CSV is (by its columns, whatever the file is called)."""
    for name, (keys, ratio, _) in TABLES.items():
        if {*keys, ratio} <= set(frame.columns):
            return name
    return None


PACKING_RATIOS = ("runs_per_hour_ratio", "ratio_all_blocks")


def table_spec(name: str, packing_ratio: str = PACKING_RATIOS[0]) -> tuple[list[str], str, dict[str, object]]:
    """:data:`TABLES`' entry for ``name``, packing's ratio column replaced by ``packing_ratio``."""
    keys, ratio, reference = TABLES[name]
    return keys, packing_ratio if name == "packing.csv" else ratio, reference


def compare_folders(
    first: Path, second: Path, within: float = 0.05, packing_ratio: str = PACKING_RATIOS[0]
) -> dict[str, pd.DataFrame]:
    """:func:`agreement` for every table of :data:`TABLES` found in both folders."""
    found = {}
    for name in TABLES:
        keys, ratio, reference = table_spec(name, packing_ratio)
        if (first / name).exists() and (second / name).exists():
            frames = read_table(first / name), read_table(second / name)
            found[name] = agreement(*frames, keys, ratio, within, reference)
    return found


def render(tables: dict[str, pd.DataFrame], within: float) -> str:
    """The tables, then one line per table and a total: how many ratios agree within ±``within``."""
    lines, agreed, total = [], 0, 0
    for name, table in tables.items():
        lines += [f"{name}:", table.to_string(index=False), ""]
        agreed, total = agreed + int(table["agree"].sum()), total + len(table)
        lines.append(f"{name}: {int(table['agree'].sum())} of {len(table)} ratios agree within ±{100 * within:g} %")
        lines.append("")
    lines.append(f"all tables: {agreed} of {total} ratios agree within ±{100 * within:g} %")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, pd.DataFrame]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("first", type=Path, help="a make bench output folder (or one of its CSV files)")
    parser.add_argument("second", type=Path, help="another run's folder (or the matching CSV file)")
    parser.add_argument("--within", type=float, default=0.05, help="relative agreement asked for (default 0.05)")
    parser.add_argument("--packing-ratio", choices=PACKING_RATIOS, default=PACKING_RATIOS[0])
    parser.add_argument("--out", type=Path, default=None, help="also write the text to this file")
    args = parser.parse_args(argv)
    if args.first.is_file() and args.second.is_file():
        first, second = read_table(args.first), read_table(args.second)
        kind = table_kind(first)
        if kind is None:
            parser.error(f"{args.first} is none of the bench tables ({', '.join(TABLES)}): no key and ratio columns")
        keys, ratio, reference = table_spec(kind, args.packing_ratio)
        tables = {args.first.name: agreement(first, second, keys, ratio, args.within, reference)}
    else:
        tables = compare_folders(args.first, args.second, args.within, args.packing_ratio)
    if not tables:
        parser.error(f"no table of {', '.join(TABLES)} is in both {args.first} and {args.second}")
    text = render(tables, args.within)
    print(text)
    if args.out:  # the file says what it compares and when (the CSVs name each run's command and commit)
        command = "python -m benchmarks.agreement " + " ".join(sys.argv[1:] if argv is None else argv)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        write_text_atomic(args.out, f"{command}\n({stamp})\n\n{text}\n")
    return tables


if __name__ == "__main__":
    main()
