"""One prepared check of every GPU path, for the brief visits of a GPU machine.

    make gpu-check OUT=<dir>            # on a GPU: at most about 8 minutes
    make gpu-check OUT=<dir> CPU=1      # the same steps, reduced, on a CPU (a test runs this form)
    python -m benchmarks.gpu_check --out <dir> [--cpu] [--budget-s 480]

The steps, in order, each a subprocess with its own time limit inside the overall budget:

0. ``exactness``: ``tests/test_fused_step.py`` on the device (``NORMLAB_TEST_DEVICE``): the fused packed
   step, eager and (on CUDA) as one CUDA graph, against each member trained alone, 24 steps, every norm.
   ``fused``: ``benchmarks.fused``, normlab's fused packed step against a plain packed loop (the ratio
   with its interval; on CUDA K = 1, 8, 64 at batch 2 and 32: targets ≤ 1.25× at K = 8 and K = 64 ≥ 30×
   K = 1's member steps per second). ``fused_sweep``: a packed sweep through Hydra with
   ``fused_step=auto`` and ``hydra.launcher.size=probe``; every member completes on the device.
1. ``single_eager``: one short run with ``trainer=gpu`` (device-resident data): it must complete with a
   finite training loss, a test error below ``sane_error`` and its record must name the GPU.
2. ``single_compiled``: the same run with ``compile=true`` (``reduce-overhead``: CUDA graphs).
3. ``parallel``: the same run alone, then 8 seeds of it as one ``hydra/launcher=parallel`` sweep sharing
   the GPU; every job must have run on the GPU; runs per hour of the 8 against the one alone.
4. ``bench``: ``benchmarks.throughput``'s device rows: normlab's step against a hand loop at batch 2, 32
   and 128, eager and compiled, in one process.
5. ``packing``: ``benchmarks.packing``'s runs per hour of K packed seeds (``hydra/launcher=packed``)
   against one run, K = 1, 2, 4, 8, at batch 2 and 32, resnet20, bn and gn, on the device (~90 s).
6. ``small_batch``: a short CIFAR-10 ``small_batch`` sweep (bn, gn × batch 2, 32) with the CIFAR recipe
   of ``sweeps/small_batch_cifar10_gpu.yaml``, and its report.

A failed step does not stop the later ones. After every step ``checks.json`` and ``checks.md`` in the
output directory are rewritten, so a machine taken away mid-check still leaves what was done; at the
end ``gpu_check.tar.gz`` packs the records, tables and logs (no checkpoints). The exit status is 0
when every step passed. The issue's speed targets (normlab ≤ 1.10× the hand loop at batch 2 and 32,
compiled ≥ 2.5× eager at batch 2, 8 parallel jobs ≥ 5× the runs per hour of one) are reported as met or
not met; they are measurements, not pass conditions.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from src.run.atomic import write_text_atomic
from src.run.provenance import git_commit, machine_description
from src.run.records import RECORD_FILE, read_record

ROOT = Path(__file__).resolve().parents[1]
TINY_CIFAR = ROOT / "tests" / "data" / "cifar10_tiny.npz"


@dataclass(frozen=True)
class Plan:
    """What each step runs: the GPU form, or its reduced CPU form."""

    device: str  # the device type every run record must name: cuda | cpu
    trainer: str  # trainer config group option
    data: tuple[str, ...]  # dataset overrides of the short runs
    model: str
    epochs: int
    sane_error: float  # a short run must reach a test error below this (chance is 90 % on CIFAR-10)
    sweep_sane_error: float  # the same for the small_batch sweep's runs
    parallel_jobs: int
    bench_args: tuple[str, ...]
    packing_args: tuple[str, ...]
    sweep_data: tuple[str, ...]  # dataset overrides of the small_batch sweep
    sweep_model: tuple[str, ...]
    sweep_epochs: int
    sweep_compile: bool
    fused_args: tuple[str, ...] = ()  # benchmarks.fused
    exactness_args: tuple[str, ...] = ()  # pytest selection of tests/test_fused_step.py
    fused_seeds: int = 8  # the fused packed sweep's seeds (one pack, its size probed)
    limits: dict[str, int] = field(default_factory=dict)  # seconds per step


GPU_PLAN = Plan(
    device="cuda",
    trainer="gpu",
    data=("dataset=cifar10_jpeg", "dataset.train_size=10000"),
    model="resnet20",
    epochs=2,
    sane_error=75.0,
    sweep_sane_error=80.0,
    parallel_jobs=8,
    bench_args=("--steps", "100", "--batches", "2,32,128", "--compile"),
    packing_args=("--models", "resnet20", "--min-seconds", "20", "--max-seconds", "100", "--warmup", "1"),
    sweep_data=("dataset.train_size=10000",),
    sweep_model=(),
    sweep_epochs=2,
    sweep_compile=False,
    fused_args=("--ks", "1,8,64", "--batches", "2,32", "--max-seconds", "25", "--model", "resnet8", "--norm", "gn"),
    exactness_args=("-k", "each_member and (eager or graph) or nesterov or single_run_steps"),
    fused_seeds=16,
    limits={
        "exactness": 150,
        "fused": 200,
        "fused_sweep": 150,
        "single_eager": 120,
        "single_compiled": 180,
        "parallel": 180,
        "bench": 240,
        "packing": 180,
        "small_batch": 180,
    },
)
CPU_PLAN = Plan(
    device="cpu",
    trainer="cpu",
    data=("dataset=npz", f"dataset.path={TINY_CIFAR}", "dataset.augment=crop_flip"),
    model="small_cnn",
    epochs=2,
    sane_error=89.0,
    sweep_sane_error=95.0,  # a few dozen steps on 450 tiny images: the CPU form checks the path, not learning
    parallel_jobs=2,
    bench_args=("--steps", "3", "--batches", "2", "--no-compile"),
    packing_args=(
        "--steps",
        "3",
        "--min-rounds",
        "2",
        "--min-seconds",
        "0",
        "--max-seconds",
        "0",
        "--tolerance",
        "inf",  # two rounds are too few to tell the undisturbed state: count every block
        "--warmup",
        "0",
        "--models",
        "resnet8",
        "--norms",
        "bn",
        "--batches",
        "2",
        "--ks",
        "1,2",
    ),
    sweep_data=("dataset=npz", f"dataset.path={TINY_CIFAR}", "dataset.augment=crop_flip"),
    sweep_model=("model=resnet8",),
    sweep_epochs=1,
    sweep_compile=False,
    fused_args=(
        "--ks",
        "2",
        "--batches",
        "2",
        "--steps",
        "4",
        "--max-seconds",
        "3",
        "--min-rounds",
        "2",
        "--mode",
        "eager",
    ),
    exactness_args=("-k", "each_member and gn-eager"),
    fused_seeds=2,
    limits={
        "exactness": 120,
        "fused": 120,
        "fused_sweep": 180,
        "single_eager": 120,
        "single_compiled": 240,
        "parallel": 180,
        "bench": 180,
        "packing": 180,
        "small_batch": 240,
    },
)


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


def render(header: dict[str, Any], results: list[dict[str, Any]]) -> str:
    """checks.md: where it ran, then one line per step with its status, time and numbers."""
    lines = ["# GPU check", ""]
    lines += [f"- {key}: {value}" for key, value in header.items()]
    lines += ["", "| step | status | seconds | details |", "|---|---|---|---|"]
    for result in results:
        details = "; ".join(f"{k} {v}" for k, v in result["details"].items())
        lines.append(f"| {result['step']} | {result['status']} | {result['seconds']} | {details} |")
    return "\n".join(lines) + "\n"


def pack(out: Path) -> Path:
    """``gpu_check.tar.gz``: everything under ``out`` except checkpoints and the archive itself."""
    archive = out / "gpu_check.tar.gz"
    partial = out / "gpu_check.tar.gz.partial"
    with tarfile.open(partial, "w:gz") as tar:
        for path in sorted(out.rglob("*")):
            if path.is_file() and path.suffix != ".ckpt" and not path.name.startswith("gpu_check.tar.gz"):
                tar.add(path, arcname=str(path.relative_to(out)))
    partial.replace(archive)
    return archive


def header(plan: Plan, budget: float, command: str) -> dict[str, Any]:
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "command": command,
        "form": "GPU" if plan.device == "cuda" else "CPU (reduced)",
        "machine": gpu or f"{machine_description()['processor']} CPU, {os.cpu_count()} cores",
        "host": machine_description()["hostname"],
        "commit": git_commit(),
        "torch": torch.__version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "budget_s": budget,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="directory for records, tables, logs and gpu_check.tar.gz")
    parser.add_argument("--cpu", action="store_true", help="the reduced form on a CPU (what the test runs)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="overall time limit in seconds")
    parser.add_argument("--steps", default=",".join(STEPS), help=f"comma-separated subset of {list(STEPS)}")
    args = parser.parse_args(argv)
    import torch

    if not args.cpu and not torch.cuda.is_available():
        parser.error("no GPU is visible: run the reduced form with --cpu (make gpu-check CPU=1)")
    unknown = sorted(set(args.steps.split(",")) - set(STEPS))
    if unknown:
        parser.error(f"--steps: unknown {unknown}; allowed: {list(STEPS)}")
    plan = CPU_PLAN if args.cpu else GPU_PLAN
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    command = "python -m benchmarks.gpu_check " + " ".join(sys.argv[1:] if argv is None else argv)
    context = Context(plan, out, time.monotonic() + args.budget_s, out / "logs")
    context.log_dir.mkdir(parents=True, exist_ok=True)
    stamp = header(plan, args.budget_s, command)
    results: list[dict[str, Any]] = []
    for name in args.steps.split(","):
        started = time.perf_counter()
        print(f"[gpu-check] {name} ...", flush=True)
        try:
            details, status = STEPS[name](context), "passed"
        except CheckFailed as error:
            details, status = {"error": str(error)}, "failed"
        except Exception as error:  # a broken step must not cost the steps after it
            details, status = {"error": f"{type(error).__name__}: {error}"}, "failed"
        seconds = round(time.perf_counter() - started, 1)
        results.append({"step": name, "status": status, "seconds": seconds, "details": details})
        print(f"[gpu-check] {name}: {status} in {seconds} s {json.dumps(details)}", flush=True)
        write_text_atomic(out / "checks.json", json.dumps({**stamp, "plan": asdict(plan), "steps": results}, indent=2))
        write_text_atomic(out / "checks.md", render(stamp, results))
    archive = pack(out)
    print(render(stamp, results))
    print(f"[gpu-check] wrote {archive}")
    return 0 if all(r["status"] == "passed" for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())
