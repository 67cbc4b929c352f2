"""The steps of ``make gpu-check`` (:data:`STEPS`, in order; see :mod:`benchmarks.gpu_check`): each runs its
commands as subprocesses from the project root under its time limit (:class:`Context`) and checks what they
wrote, raising :class:`CheckFailed` where a result is not what the GPU path promises."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from benchmarks.gpu_plans import Plan
from src.run.records import RECORD_FILE, read_record

ROOT = Path(__file__).resolve().parents[1]


class CheckFailed(Exception):
    """A step ran but its result is not what the GPU path promises."""


@dataclass
class Context:
    plan: Plan
    out: Path
    deadline: float
    log_dir: Path

    def remaining(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, name: str, args: Sequence[str], limit: int) -> float:
        """Run ``python <args>`` from the project root with output to ``logs/<name>.log``; its seconds."""
        timeout = min(limit, self.remaining())
        if timeout < 5:
            raise CheckFailed(f"no time left in the budget for {name}")
        self.log_dir.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        with open(self.log_dir / f"{name}.log", "w") as log:
            log.write(f"$ {sys.executable} {' '.join(args)}\n")
            log.flush()
            try:
                completed = subprocess.run(
                    [sys.executable, *args], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, timeout=timeout
                )
            except subprocess.TimeoutExpired:
                raise CheckFailed(f"{name} ran past its {timeout:.0f} s limit (logs/{name}.log)") from None
        if completed.returncode != 0:
            raise CheckFailed(f"{name} exited with {completed.returncode} (logs/{name}.log)")
        return time.perf_counter() - started

    def train(self, name: str, overrides: Sequence[str], limit: int) -> float:
        return self.run(name, ["-m", "src.train", *overrides], limit)


def records_under(directory: Path) -> list[dict[str, Any]]:
    return [read_record(path) for path in sorted(directory.rglob(RECORD_FILE))]


def check_record(record: dict[str, Any], plan: Plan, sane_error: float | None = None) -> dict[str, Any]:
    """The promises of one trained run: completed, finite loss, sane error, on the plan's device."""
    sane_error = plan.sane_error if sane_error is None else sane_error
    where = record.get("run_dir", "?")
    if record.get("status") != "completed":
        raise CheckFailed(f"{where}: status {record.get('status')}: {record.get('error', '')}")
    metrics, timing = record["metrics"], record["timing"]
    device = str(record["environment"]["device"])
    if not math.isfinite(metrics["train_loss"]):
        raise CheckFailed(f"{where}: train loss {metrics['train_loss']}")
    if not metrics["test_error"] < sane_error:
        raise CheckFailed(f"{where}: test error {metrics['test_error']:.1f} % is not below {sane_error} %")
    if not device.startswith(plan.device):
        raise CheckFailed(f"{where}: ran on {device}, not on {plan.device}")
    return {
        "device": device,
        "test_error": round(metrics["test_error"], 2),
        "train_loss": round(metrics["train_loss"], 4),
        "median_step_ms": timing["median_step_ms"],
        "train_seconds": timing["train_seconds"],
        "peak_mb": record["memory"]["peak_mb"],
    }


def short_run(context: Context, compiled: bool) -> list[str]:
    plan = context.plan
    return [
        f"trainer={plan.trainer}",
        *plan.data,
        f"model={plan.model}",
        "norm=bn",
        "batch=32",
        f"epochs={plan.epochs}",
        "logger=csv",
        "study=gpu_check",
        "force=true",
        f"compile={str(compiled).lower()}",
    ]


def single(context: Context, compiled: bool) -> dict[str, Any]:
    name = "single_compiled" if compiled else "single_eager"
    run_dir = context.out / "runs" / name
    seconds = context.train(
        name, [*short_run(context, compiled), f"hydra.run.dir={run_dir}"], context.plan.limits[name]
    )
    result = check_record(read_record(run_dir / RECORD_FILE), context.plan)
    if compiled and not read_record(run_dir / RECORD_FILE)["timing"]["compiled"]:
        raise CheckFailed(f"{run_dir}: the record says it was not compiled")
    return {**result, "wall_seconds": round(seconds, 1)}


def parallel(context: Context) -> dict[str, Any]:
    """One job alone, then ``parallel_jobs`` seeds of it sharing the device; runs per hour of each."""
    plan, jobs = context.plan, context.plan.parallel_jobs
    limit = plan.limits["parallel"]
    alone_dir, shared_dir = context.out / "runs" / "parallel_1", context.out / "runs" / f"parallel_{jobs}"
    base = ["-m", *short_run(context, compiled=False)]
    alone = context.train("parallel_1", [*base, "seed=0", f"hydra.sweep.dir={alone_dir}"], limit)
    seeds = ",".join(str(seed) for seed in range(jobs))
    launcher = ["hydra/launcher=parallel", f"hydra.launcher.n_jobs={jobs}"]
    shared = context.train(
        f"parallel_{jobs}", [*base, f"seed={seeds}", *launcher, f"hydra.sweep.dir={shared_dir}"], limit
    )
    records = records_under(shared_dir)
    if len(records) != jobs:
        raise CheckFailed(f"{shared_dir}: {len(records)} run records, expected {jobs}")
    checked = [check_record(record, plan) for record in records]
    speedup = (jobs / shared) / (1 / alone)
    return {
        "jobs": jobs,
        "devices": sorted({c["device"] for c in checked}),
        "alone_seconds": round(alone, 1),
        "parallel_seconds": round(shared, 1),
        "runs_per_hour_alone": round(3600 / alone, 1),
        "runs_per_hour_parallel": round(3600 * jobs / shared, 1),
        "speedup": round(speedup, 2),
        "target_5x": "met" if speedup >= 5 else "not met",
    }


def bench(context: Context) -> dict[str, Any]:
    out = context.out / "bench"
    args = ["-m", "benchmarks.throughput", "--no-embedded", "--no-sweep", *context.plan.bench_args, "--out", str(out)]
    context.run("bench", args, context.plan.limits["bench"])
    table = pd.read_csv(out / "throughput.csv")
    result: dict[str, Any] = {"rows": len(table)}
    for row in table.itertuples():
        key = f"b{row.batch}_{row.mode}"
        result[f"{key}_hand_ms"] = round(row.hand_ms, 3)
        result[f"{key}_normlab_ms"] = round(row.normlab_ms, 3)
        result[f"{key}_ratio"] = round(row.normlab_over_hand, 3)
    eager = table[table["mode"] == "eager"].set_index("batch")["normlab_over_hand"]
    for batch in (2, 32):
        if batch in eager.index:
            result[f"target_ratio_b{batch}"] = "met" if eager[batch] <= 1.10 else "not met"
    if "speedup_vs_eager" in table:
        compiled = table[table["mode"] == "compiled"].set_index("batch")["speedup_vs_eager"]
        if 2 in compiled.index:
            result["compiled_speedup_b2"] = round(float(compiled[2]), 2)
            result["target_compiled_2.5x"] = "met" if compiled[2] >= 2.5 else "not met"
    return result


def packing(context: Context) -> dict[str, Any]:
    """Packed runs per hour against unpacked on the plan's device (``benchmarks.packing``)."""
    out = context.out / "bench"
    device = "cuda" if context.plan.device == "cuda" else "cpu"
    args = ["-m", "benchmarks.packing", "--device", device, *context.plan.packing_args, "--out", str(out)]
    context.run("packing", args, context.plan.limits["packing"])
    table = pd.read_csv(out / "packing.csv")
    result: dict[str, Any] = {"rows": len(table)}
    for row in table[table["K"] > 1].itertuples():
        interval = f"[{row.ci95_low}, {row.ci95_high}]"
        result[f"{row.model}_{row.norm}_b{row.batch}_K{row.K}"] = f"{row.runs_per_hour_ratio}x {interval}"
    return result


def small_batch(context: Context) -> dict[str, Any]:
    """bn, gn × batch 2, 32 with the recipe of ``sweeps/small_batch_cifar10_gpu.yaml``, then the report."""
    plan = context.plan
    sweep_dir = context.out / "runs" / "small_batch"
    overrides = [
        "-m",
        "--config-dir",
        "sweeps",
        "--config-name",
        "small_batch_cifar10_gpu",
        "study=gpu_check_small_batch",
        f"trainer={plan.trainer}",
        *plan.sweep_data,
        *plan.sweep_model,
        f"epochs={plan.sweep_epochs}",
        f"compile={str(plan.sweep_compile).lower()}",
        "norm=bn,gn",
        "batch=2,32",
        "seed=0",
        "logger=csv",
        "force=true",
        f"hydra.launcher.n_jobs={min(4, plan.parallel_jobs)}",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    seconds = context.train("small_batch", overrides, plan.limits["small_batch"])
    records = records_under(sweep_dir)
    if len(records) != 4:
        raise CheckFailed(f"{sweep_dir}: {len(records)} run records, expected 4")
    for record in records:
        check_record(record, plan, plan.sweep_sane_error)
    context.run("report", ["-m", "src.report", str(sweep_dir), "--out", str(context.out / "results")], 120)
    report = context.out / "results" / "gpu_check_small_batch"
    if not (report / "claims.md").exists():
        raise CheckFailed(f"{report}: the report wrote no claims.md")
    errors = {
        f"{r['norm']}@{r['batch']}": round(r["metrics"]["test_error"], 2)
        for r in sorted(records, key=lambda r: (r["norm"], r["batch"]))
    }
    return {"sweep_seconds": round(seconds, 1), **errors}


def exactness(context: Context) -> dict[str, Any]:
    """tests/test_fused_step.py on the plan's device: the fused packed step (eager, compiled and, on CUDA,
    one CUDA graph) against each member trained alone with torch.optim.SGD, 24 steps."""
    args = ["-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_fused_step.py", *context.plan.exactness_args]
    os.environ["NORMLAB_TEST_DEVICE"] = context.plan.device
    try:
        seconds = context.run("exactness", args, context.plan.limits["exactness"])
    finally:
        os.environ.pop("NORMLAB_TEST_DEVICE", None)
    summary = (context.log_dir / "exactness.log").read_text().strip().splitlines()[-1]
    return {"pytest": summary, "seconds": round(seconds, 1)}


def fused(context: Context) -> dict[str, Any]:
    """benchmarks.fused: normlab's fused packed step against a plain packed loop, and K = 64's gain."""
    out = context.out / "bench"
    device = "cuda" if context.plan.device == "cuda" else "cpu"
    context.run(
        "fused",
        ["-m", "benchmarks.fused", "--device", device, *context.plan.fused_args, "--out", str(out)],
        context.plan.limits["fused"],
    )
    table = pd.read_csv(out / f"fused_{device}.csv", comment="#")
    result: dict[str, Any] = {}
    for row in table.itertuples():
        result[f"b{row.batch}_K{row.K}"] = f"{row.ratio}x [{row.ci95_low}, {row.ci95_high}] {row.member_steps_per_s}/s"
    rates = table.set_index(["batch", "K"])["member_steps_per_s"]
    if device == "cuda":
        for batch in (2, 32):
            if (batch, 8) in rates.index:
                ratio = float(table[(table.batch == batch) & (table.K == 8)]["ratio"].iloc[0])
                result[f"target_K8_b{batch}_1.25x"] = "met" if ratio <= 1.25 else "not met"
        if (2, 64) in rates.index and (2, 1) in rates.index:
            gain = float(rates[(2, 64)] / rates[(2, 1)])
            result["K64_gain_b2"] = round(gain, 1)
            result["target_K64_30x"] = "met" if gain >= 30 else "not met"
    return result


def fused_sweep(context: Context) -> dict[str, Any]:
    """A packed sweep through Hydra with fused_step=auto and a probed pack size: every member completes on
    the device with its fused mode in the record."""
    plan = context.plan
    sweep_dir = context.out / "runs" / "fused_sweep"
    seeds = ",".join(str(s) for s in range(plan.fused_seeds))
    overrides = [
        "-m",
        *short_run(context, compiled=False),
        "fused_step=auto",
        f"seed={seeds}",
        "hydra/launcher=packed",
        "hydra.launcher.size=probe",
        f"hydra.sweep.dir={sweep_dir}",
    ]
    seconds = context.train("fused_sweep", overrides, plan.limits["fused_sweep"])
    records = records_under(sweep_dir)
    if len(records) != plan.fused_seeds:
        raise CheckFailed(f"{sweep_dir}: {len(records)} run records, expected {plan.fused_seeds}")
    checked = [check_record(record, plan) for record in records]
    modes = sorted({str(r["timing"].get("fused_step")) for r in records})
    sizes = sorted({int((r.get("pack") or {}).get("size", 1)) for r in records})
    return {
        "seconds": round(seconds, 1),
        "modes": modes,
        "pack_sizes": sizes,
        "median_step_ms": checked[0]["median_step_ms"],
    }


STEPS: dict[str, Callable[[Context], dict[str, Any]]] = {
    "exactness": exactness,
    "fused": fused,
    "fused_sweep": fused_sweep,
    "single_eager": lambda context: single(context, compiled=False),
    "single_compiled": lambda context: single(context, compiled=True),
    "parallel": parallel,
    "bench": bench,
    "packing": packing,
    "small_batch": small_batch,
}
