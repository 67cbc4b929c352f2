"""Progress output (issue 17, point 1): a progress bar on a terminal, a line per epoch and a heartbeat
without one, and a sweep's ``[k/N]`` line as each run ends."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import termios
import time

import pytest

from src.sweep.progress import SweepProgress, sweep_size
from src.training.callbacks import EpochLines, fmt_seconds, progress_callback

from .conftest import PYTHON, ROOT, run_train

TINY = (
    "dataset=digits",
    "epochs=1",
    "model.widths=[8,16]",
    "dataset.train_size=96",  # 3 batches of 32 (trainer limits are refused: a record names its whole run)
    "trainer.accelerator=cpu",
)


def run_on_a_terminal(*args: str, cwd, timeout: float = 120) -> str:
    """``python -m src.train *args`` with stdout and stderr on a pseudo-terminal (120 columns)."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    process = subprocess.Popen([PYTHON, "-m", "src.train", *args], stdout=follower, stderr=follower, cwd=cwd, env=env)
    os.close(follower)
    output, deadline = b"", time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(leader)
    assert process.returncode == 0, output.decode(errors="replace")[-3000:]
    return output.decode(errors="replace")


def test_a_run_on_a_terminal_shows_a_progress_bar_with_speed_and_eta(tmp_path):
    text = run_on_a_terminal(*TINY, f"hydra.run.dir={tmp_path / 'run'}", cwd=tmp_path)
    bars = [line for line in re.split(r"[\r\n]", text) if line.startswith("Epoch 0:")]
    assert bars and re.search(r"3/3 \[\d\d:\d\d<\d\d:\d\d, +[\d.]+it/s", bars[-1]), bars[-3:]  # elapsed<ETA, speed
    assert "; run ETA" not in text  # the bar replaces the per-epoch lines (EpochLines)


@pytest.mark.slow  # make test-all (idle 2-core CPU: 10-35 s)
def test_without_a_terminal_a_line_per_epoch_and_a_heartbeat_stand_in(tmp_path):
    result = run_train(*TINY, "callbacks.progress.heartbeat_minutes=1e-6", f"hydra.run.dir={tmp_path}/r", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "it/s" not in output and "Epoch 0:" not in output  # no bar in a log
    assert re.search(r"epoch 1/1: step 2/3 \(67%\), [\d.]+ steps/s, epoch ETA \d+s", output), output[-3000:]
    assert re.search(r"epoch 1/1: 3 steps, [\d.]+ steps/s, \d+s; run ETA 0s", output)
    quiet = run_train(*TINY, "callbacks=none", f"hydra.run.dir={tmp_path}/q", cwd=tmp_path)
    assert quiet.returncode == 0 and "steps/s" not in quiet.stdout + quiet.stderr


def test_the_progress_callback_is_a_bar_only_on_a_terminal():
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar

    assert isinstance(progress_callback(terminal=True), TQDMProgressBar)
    assert isinstance(progress_callback("rich", terminal=True), RichProgressBar)
    assert isinstance(progress_callback("rich", terminal=False), EpochLines)
    with pytest.raises(ValueError, match=r"callbacks\.progress\.bar=curses: allowed are tqdm, rich"):
        progress_callback("curses")


def test_a_sweep_prints_k_of_n_with_skipped_failed_left_and_eta(tmp_path):
    sweep = tmp_path / "m"
    args = ("-m", "norm=bn,gn", *TINY, f"hydra.sweep.dir={sweep}")
    result = run_train(*args, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [line for line in result.stdout.splitlines() if re.match(r"\[\d+/", line)]
    assert re.fullmatch(r"\[1/2\] norm=bn: completed [\d.]+% \(\d+s\); 0 skipped, 0 failed, 1 left, ETA \d+s", lines[0])
    assert re.fullmatch(r"\[2/2\] norm=gn: completed [\d.]+% \(\d+s\); 0 skipped, 0 failed, 0 left", lines[1])
    again = run_train(*args, "norm=bn,gn,ln", cwd=tmp_path)  # the later override wins: 3 runs, 2 done
    lines = [line for line in again.stdout.splitlines() if re.match(r"\[\d+/", line)]
    assert [line.split(";")[0].split(":")[1].split()[0] for line in lines] == ["skipped", "skipped", "completed"]
    assert lines[-1].endswith("2 skipped, 0 failed, 0 left") and lines[0].startswith("[1/3] norm=bn:")
    # then the sweep's table: every completed run of the sweep directory, GN − BN per batch
    table = again.stdout[again.stdout.index("test error (%) of the sweep's runs") :].splitlines()
    assert [line.split()[0] for line in table[2:5]] == ["bn", "gn", "ln"] and table[5].startswith("gn − bn")
    assert "make report STUDY=" in again.stdout


def test_the_sweep_table_shows_the_claims_directions():
    from src.sweep.summary import sweep_table

    def record(norm, batch, error, status="completed"):
        return {"norm": norm, "batch": batch, "status": status, "metrics": {"test_error": error}}

    records = [
        record("bn", 2, 40.0),
        record("bn", 2, 42.0),
        record("bn", 32, 30.0),
        record("gn", 2, 33.0),
        record("gn", 32, 34.0),
        record("ln", 32, 50.0, status="diverged"),
    ]
    lines = sweep_table(records).splitlines()
    assert lines[2].split() == ["bn", "41.00", "(2)", "30.00", "(1)"]
    assert lines[4].split() == ["gn", "−", "bn", "-8.00", "+4.00"]
    assert lines[5].startswith("bn@2 − bn@32 = +11.00: BN's error rises")
    assert sweep_table([record("ln", 32, 50.0, status="failed")]) == ""


def test_the_sweep_table_never_averages_runs_of_other_settings():
    """A sweep directory holding a study's two arms (epochs 16 and 8) gets a table for each: one mean over
    both would be no mean over seeds. A key that follows another (``trainer.max_epochs``) names nothing."""
    from src.sweep.summary import sweep_table

    def record(norm, epochs, seed, error, lr=0.1):
        config = {"norm": {"name": norm}, "epochs": epochs, "trainer": {"max_epochs": epochs}, "seed": seed}
        config["optim"] = {"base_lr": lr}
        return {"norm": norm, "batch": 32, "status": "completed", "metrics": {"test_error": error}, "config": config}

    records = [record("bn", 16, s, 30.0 + s) for s in (1, 2)] + [record("bn", 8, s, 40.0 + s) for s in (1, 2, 3)]
    records += [record("gn", 16, 1, 31.0)]
    text = sweep_table(records)
    headers = [line for line in text.splitlines() if line.startswith("test error")]
    assert headers == [
        "test error (%) of the sweep's runs at epochs=16, mean over seeds (n runs):",
        "test error (%) of the sweep's runs at epochs=8, mean over seeds (n runs):",
    ]
    rows = [line.split() for line in text.splitlines()]
    assert ["bn", "31.50", "(2)"] in rows and ["bn", "42.00", "(3)"] in rows and ["gn", "−", "bn", "-0.50"] in rows
    # seeds alone never split a table; a second factor does, named with its value
    assert sweep_table([record("bn", 16, s, 30.0) for s in (1, 2)]).startswith("test error (%) of the sweep's runs,")
    two = sweep_table([record("bn", 16, 1, 30.0), record("bn", 16, 1, 20.0, lr=0.4)])
    assert "at epochs=16" not in two and "at optim.base_lr=0.4, mean" in two


def test_the_sweep_table_never_compares_cells_of_other_settings():
    """bn ran at 1 epoch and gn at 10 into one directory: each cell holds one setting, yet gn − bn and
    bn@2 − bn@32 across them would compare schedules, not norms. What the norm and the batch set
    themselves (the norm group's keys, dataset.batch_size) splits nothing."""
    from src.sweep.summary import sweep_table

    def record(norm, batch, epochs, error):
        config = {
            "norm": {"name": norm, "layer": {"_target_": f"torch.nn.{norm.upper()}"}},
            "dataset": {"batch_size": batch},
            "batch": batch,
            "epochs": epochs,
            "seed": 0,
        }
        return {"norm": norm, "batch": batch, "status": "completed", "metrics": {"test_error": error}, "config": config}

    text = sweep_table([record("bn", 2, 1, 60.0), record("bn", 32, 1, 50.0), record("gn", 2, 10, 20.0)])
    headers = [line for line in text.splitlines() if line.startswith("test error")]
    assert [h.split(" at ")[1].split(",")[0] for h in headers] == ["epochs=1", "epochs=10"]
    assert "gn − bn" not in text and "bn@2 − bn@32 = +10.00" in text  # within epochs=1 only
    same = sweep_table([record("bn", 2, 1, 60.0), record("gn", 32, 1, 50.0)])
    assert same.startswith("test error (%) of the sweep's runs, mean") and "gn − bn" in same


def test_the_sweep_line_counts_failures_and_the_eta_ignores_skipped_runs(tmp_path):
    progress = SweepProgress(tmp_path, total=5, started=1000.0)
    event = {"overrides": "norm=bn", "status": "skipped", "test_error": 9.0, "seconds": 0.0, "finished": 1001.0}
    assert progress.add(event) == "[1/5] norm=bn: skipped 9.00% (0s); 1 skipped, 0 failed, 4 left"
    event = {**event, "overrides": "norm=gn", "status": "failed", "test_error": float("nan"), "finished": 1061.0}
    assert progress.add({**event, "seconds": 60.0}) == (
        "[2/5] norm=gn: failed (1m00s); 1 skipped, 1 failed, 3 left, ETA 3m03s"  # 61 s per trained run × 3
    )
    assert fmt_seconds(7322) == "2h02m" and fmt_seconds(float("nan")) == "?"


def test_the_sweep_process_prints_what_remote_jobs_write(tmp_path, capsys):
    """Under submitit the jobs' output goes to their own logs: the sweep's process prints their lines."""
    progress = SweepProgress(tmp_path, total=2, started=time.time())
    progress.start_printing(interval=0.05)
    event = {"overrides": "seed=0", "status": "completed", "test_error": 1.5, "seconds": 3.0, "finished": time.time()}
    progress.add(event)
    progress.add({**event, "overrides": "seed=1"})
    progress.stop_printing()
    printed = capsys.readouterr().out.splitlines()
    assert [line.split(":")[0] for line in printed] == ["[1/2] seed=0", "[2/2] seed=1"]


def test_the_sweep_size_is_the_product_of_the_choices():
    from omegaconf import OmegaConf

    hydra_cfg = OmegaConf.create(
        {"sweeper": {"params": {"seed": "0,1"}}, "overrides": {"task": ["norm=bn,gn,ln", "batch=2", "seed=3,4"]}}
    )
    assert sweep_size(hydra_cfg) == (6, ["norm", "seed"])  # the command line's seed wins over the study's


@pytest.mark.slow
def test_the_parallel_launcher_prints_every_run(tmp_path):
    sweep = tmp_path / "m"
    result = run_train("-m", "hydra/launcher=parallel", "seed=0,1", *TINY, f"hydra.sweep.dir={sweep}", cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = sorted(line for line in result.stdout.splitlines() if re.match(r"\[\d+/", line))
    assert [line[:5] for line in lines] == ["[1/2]", "[2/2]"], result.stdout[-3000:]
    assert {line.split(":")[0][6:] for line in lines} == {"seed=0", "seed=1"}


def test_an_older_record_is_skipped_only_if_it_completed(tmp_path):
    """A killed run (or pack) leaves a "running" record; the sweep that resumes it did not skip it."""
    import json

    from src.run.records import RECORD_FILE
    from src.sweep.progress import job_event

    (tmp_path / RECORD_FILE).write_text(json.dumps({"status": "running", "metrics": {}}))
    later = time.time() + 10
    assert job_event(tmp_path, "seed=0", later, later, False)["status"] == "running"
    (tmp_path / RECORD_FILE).write_text(json.dumps({"status": "completed", "metrics": {"test_error": 12.5}}))
    event = job_event(tmp_path, "seed=0", later, later, False)
    assert event["status"] == "skipped" and event["test_error"] == 12.5


def test_other_factors_name_each_factor_once_and_never_the_cell():
    """gn's ``norm.layer.groups`` follows ``norm_groups`` (bn has no such key): one factor, named by the
    shorter key, and bn's runs stay beside gn's. A key set by the norm alone, or equal to the batch, is the
    cell itself; a key that differs across cells (a norm trained without WS) is a factor."""
    from src.run.config_keys import other_factors

    def config(norm, batch, groups, ws=True):
        layer = {"groups": groups} if norm == "gn" else {"momentum": 0.1}
        return {
            "norm": {"name": norm, "layer": layer},
            "norm_groups": groups,
            "batch": batch,
            "dataset": {"batch_size": batch},
            "standardize_weights": ws,
            "seed": 0,
        }

    runs = [(n, 32, config(n, 32, g)) for n in ("bn", "gn") for g in (8, 32)]
    assert other_factors(runs) == ["norm_groups"]
    assert other_factors([(n, b, config(n, b, 32)) for n in ("bn", "gn") for b in (2, 32)]) == []
    assert other_factors([("bn", 32, config("bn", 32, 32)), ("none", 32, config("none", 32, 32, ws=False))]) == [
        "standardize_weights"
    ]
