"""One prepared check of every GPU path, for the brief visits of a GPU machine.

    make gpu-check OUT=<dir>            # on a GPU: at most about 8 minutes
    make gpu-check OUT=<dir> CPU=1      # the same steps, reduced, on a CPU (a test runs this form)
    python -m benchmarks.gpu_check --out <dir> [--cpu] [--budget-s 480]

The steps (:mod:`benchmarks.gpu_steps`; what each runs: :mod:`benchmarks.gpu_plans`), in order, each a
subprocess with its own time limit inside the overall budget:

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
import os
import sys
import tarfile
import time
from dataclasses import asdict
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from benchmarks.gpu_plans import CPU_PLAN, GPU_PLAN, Plan
from benchmarks.gpu_steps import STEPS, CheckFailed, Context
from src.run.atomic import write_text_atomic
from src.run.provenance import git_commit, machine_description


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
    if not args.budget_s > 0:
        parser.error(f"--budget-s={args.budget_s:g}: it must be a number of seconds > 0")
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
