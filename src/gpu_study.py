"""A study in a fixed device budget: ``make gpu-study STUDY=<name> OUT=<dir> BUDGET_S=480 [CPU=1]``.

    python -m src.gpu_study small_batch_cifar10 --out gpu_out --budget-s 480 [--cpu] [override ...]

For the brief visits of a GPU machine. It runs the study's sweep (``experiment=<name>``) packed, with
``fused_step=auto`` (the whole step as one CUDA graph) and ``hydra.launcher.size=probe`` (each cell's pack
size measured on this machine, with an estimate of each pack's time in ``launch_plan.json``),
``--n-jobs`` packs at a time, into ``<out>/multirun/<study>/``. At the budget's end (less the time kept to
bundle) the sweep is stopped: every pack keeps the checkpoint of its last finished epoch. Then
``<out>/<study>.tar.gz`` bundles what the way back needs (records, curves and logs of every run
directory, the launch plan, and the packs' checkpoints, each file cut into parts under 16 MiB), with
``summary.json``: runs completed, runs left and the launch plan's estimate for the rest.

On any machine, ``python -m src.restore <out>/<study>.tar.gz`` unpacks the bundle into
``multirun/<study>/`` (joining the parts), and the same sweep command (printed in ``summary.json``)
trains only what is left, resuming each pack from its checkpoint. ``--cpu`` is the rehearsal on a CPU
(``trainer=cpu``; a test runs it with a tiny study).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from src.run.atomic import write_text_atomic
from src.run.bundle import bundle
from src.run.provenance import PROJECT_ROOT, git_commit
from src.run.records import RECORD_FILE, read_record

KEEP_S = 30.0  # of the budget, kept to stop the sweep and bundle


def sweep_command(study: str, sweep_dir: Path, cpu: bool, n_jobs: int, overrides: list[str]) -> list[str]:
    """The sweep this command runs (and the one that resumes it elsewhere)."""
    return [
        "-m",
        "src.train",
        "-m",
        f"experiment={study}",
        # steering, so a run's directory and hash are the same on any device: the GPU where there is one
        f"trainer.accelerator={'cpu' if cpu else 'auto'}",
        "fused_step=auto",
        "logger=csv",
        "hydra/launcher=packed",
        "hydra.launcher.size=probe",
        f"hydra.launcher.n_jobs={n_jobs}",
        f"hydra.sweep.dir={sweep_dir}",
        *overrides,
    ]


def run_until(command: list[str], seconds: float, log_file: Path) -> tuple[int | None, bool]:
    """Run ``python <command>`` in its own process group until it ends or ``seconds`` pass; then SIGTERM
    the group (SIGKILL 20 s later). Returns (exit status or None, whether it was stopped)."""
    with open(log_file, "w") as log:
        log.write(f"$ {sys.executable} {' '.join(command)}\n")
        log.flush()
        process = subprocess.Popen(
            [sys.executable, *command], cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            return process.wait(timeout=max(1.0, seconds)), False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            return None, True


def summarize(sweep_dir: Path, stopped: bool, command: list[str], budget_s: float, seconds: float) -> dict[str, Any]:
    """What the visit trained, what is left, and the launch plan's estimate for the rest.

    The sweep's runs are the launch plan's (runs never started have no record yet), else the records';
    the rest's estimate is the plan's total training time × the share of runs left."""
    records = [read_record(path) for path in sorted(sweep_dir.rglob(RECORD_FILE))]
    done = [r for r in records if r.get("status") == "completed"]
    plan_file = sweep_dir / "launch_plan.json"
    plan = json.loads(plan_file.read_text()) if plan_file.exists() else {}
    groups = plan.get("groups", [])
    runs = max(sum(int(g["runs"]) for g in groups), len(records))
    total_s = sum(g["pack_seconds"] * g["packs"] for g in groups) / max(1, int(plan.get("n_jobs", 1)))
    left = runs - len(done)
    return {
        "commit": git_commit(),
        "budget_s": budget_s,
        "seconds": round(seconds, 1),
        "stopped_at_budget": stopped,
        "runs": runs,
        "runs_completed": len(done),
        "runs_left": left,
        "runs_not_started": runs - len(records),
        "probe_seconds": round(sum(float(g.get("probe_seconds", 0.0)) for g in groups), 1),
        "estimated_total_s": round(total_s, 1),
        "estimated_rest_s": round(total_s * left / max(1, runs), 1),
        "resume": f"python -m src.restore <bundle> && python {' '.join(command)}",
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m src.gpu_study", description=__doc__.split("\n\n")[0])
    parser.add_argument("study", help="a study of conf/experiment/")
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--budget-s", type=float, default=480.0)
    parser.add_argument("--n-jobs", type=int, default=4, help="packs at a time (worker processes)")
    parser.add_argument("--cpu", action="store_true", help="the rehearsal on a CPU")
    parser.add_argument("overrides", nargs="*", help="further overrides of the sweep (e.g. epochs=2)")
    args = parser.parse_intermixed_args(argv)
    if not (PROJECT_ROOT / "conf" / "experiment" / f"{args.study}.yaml").is_file():
        parser.error(f"study={args.study}: no conf/experiment/{args.study}.yaml")
    if not args.budget_s > KEEP_S:  # a visit's minutes are few: a budget that trains nothing fails before it starts
        parser.error(f"--budget-s={args.budget_s:g}: it must exceed {KEEP_S:g} (the seconds kept to stop and bundle)")
    if args.n_jobs < 1:
        parser.error(f"--n-jobs={args.n_jobs}: it must be an integer >= 1 (packs at a time)")
    started = time.monotonic()
    out = args.out.resolve()
    sweep_dir = out / "multirun" / args.study
    sweep_dir.mkdir(parents=True, exist_ok=True)
    command = sweep_command(args.study, sweep_dir, args.cpu, args.n_jobs, args.overrides)
    status, stopped = run_until(command, args.budget_s - KEEP_S, out / "sweep.log")
    names = bundle(sweep_dir, out / f"{args.study}.tar.gz")
    resume = sweep_command(args.study, Path("multirun") / args.study, args.cpu, args.n_jobs, args.overrides)
    summary = summarize(sweep_dir, stopped, resume, args.budget_s, time.monotonic() - started)
    summary.update({"sweep_exit": status, "bundled_files": len(names)})
    write_text_atomic(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0 if stopped or status == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
