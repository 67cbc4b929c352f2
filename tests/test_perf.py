"""The fast paths: compiled steps equal eager ones, device-resident batches, one GPU per job, memory."""

from __future__ import annotations

import copy
import functools
import math

import pytest
import torch
import torch.nn.functional as F

from src.data.device_loader import DeviceBatches
from src.models import SmallCNN
from src.norms import Normalization, group_norm
from src.training.perf import compile_for_training, gpu_for_job
from src.training.single import train


@pytest.mark.parametrize("layer", [torch.nn.BatchNorm2d, group_norm])
def test_compiled_training_step_matches_eager(layer):
    torch.manual_seed(0)
    eager = SmallCNN((1, 8, 8), 10, Normalization("n", layer=layer), widths=(8, 16))
    compiled_source = copy.deepcopy(eager)
    compiled = compile_for_training(compiled_source, mode="default")
    images, labels = torch.randn(4, 1, 8, 8), torch.tensor([0, 1, 2, 3])
    for net in (eager, compiled):
        F.cross_entropy(net(images), labels).backward()
    for (name, p_eager), p_compiled in zip(eager.named_parameters(), compiled_source.parameters(), strict=True):
        torch.testing.assert_close(p_compiled.grad, p_eager.grad, atol=1e-5, rtol=1e-4, msg=name)
    for b_eager, b_compiled in zip(eager.buffers(), compiled_source.buffers(), strict=True):
        torch.testing.assert_close(b_compiled, b_eager, atol=1e-6, rtol=1e-5)  # BN running stats too


def test_device_batches_cover_each_sample_once_per_epoch_and_shard_disjointly():
    images = torch.arange(50, dtype=torch.uint8).view(50, 1, 1, 1)
    labels = torch.arange(50)
    loader = DeviceBatches(images, labels, batch_size=8, shuffle=True, drop_last=True)
    batches = list(loader)
    assert len(batches) == len(loader) == 6
    seen = torch.cat([b[1] for b in batches])
    assert len(set(seen.tolist())) == 48 and all(len(b[1]) == 8 for b in batches)
    assert torch.equal(batches[0][0].flatten().long(), batches[0][1])  # images and labels stay paired
    evaluation = DeviceBatches(images, labels, batch_size=8, shuffle=False, drop_last=False)
    assert torch.equal(torch.cat([b[1] for b in evaluation]), labels)
    shards = []
    for shard in (0, 1):  # DDP ranks share the seed, so they draw the same permutation
        torch.manual_seed(7)
        batches = DeviceBatches(images, labels, 4, shuffle=True, drop_last=True, shard=shard, num_shards=2)
        shards.append(set(torch.cat([b[1] for b in batches]).tolist()))
    assert not shards[0] & shards[1]


def test_each_parallel_job_gets_its_own_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert [gpu_for_job(n, 1) for n in range(6)] == [[0], [1], [2], [3], [0], [1]]
    assert gpu_for_job(3, 2) is None  # a multi-device (DDP) run keeps its own devices
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert gpu_for_job(3, 1) is None


def test_memory_is_recorded_and_does_not_grow_across_epochs(compose_cfg, tmp_path):
    cfg = compose_cfg("dataset=digits", "model.widths=[8,16]", "logger=none", "epochs=4", "batch=16")
    memory = train(cfg, tmp_path)["memory"]
    per_epoch = memory["per_epoch_mb"]
    assert len(per_epoch) == 4 and memory["peak_mb"] >= max(per_epoch) > 0
    assert per_epoch[-1] - per_epoch[1] < 0.05 * per_epoch[1]


def test_training_from_device_resident_batches(compose_cfg, tmp_path):
    from hydra.utils import instantiate

    cfg = compose_cfg("dataset=digits", "model.widths=[8,16]", "logger=none", "epochs=3", "batch=16")
    module = instantiate(cfg.dataset, on_device=True)
    module.setup()
    assert isinstance(module.train_dataloader(), DeviceBatches)
    assert not isinstance(instantiate(cfg.dataset, on_device=False).train_dataloader, DeviceBatches)
    on_device = train(
        compose_cfg(
            "dataset=digits", "model.widths=[8,16]", "logger=none", "epochs=3", "batch=16", "dataset.on_device=true"
        ),
        tmp_path / "device",
    )
    on_host = train(cfg, tmp_path / "host")
    assert on_device["timing"]["train_steps"] == on_host["timing"]["train_steps"]
    assert on_device["metrics"]["test_error"] < 10 and on_host["metrics"]["test_error"] < 10


def test_the_benchmark_writes_its_tables_with_the_machine_and_command(tmp_path, monkeypatch):
    """`make bench` end to end with tiny step counts (no timing is asserted, only what it measures)."""
    import pandas as pd

    from benchmarks import throughput
    from benchmarks.agreement import main as agreement_main

    out = tmp_path / "bench"
    argv = ["--steps", "2", "--batches", "2", "--no-sweep", "--embedded", "--embedded-steps", "3", "--reps", "2"]
    throughput.main([*argv, "--threads", "1", "--out", str(out), "--runs", str(tmp_path / "multirun")])
    assert (tmp_path / "multirun" / "bench_embedded" / "result.json").is_file()  # its runs went where told
    embedded = pd.read_csv(out / "embedded.csv")
    assert list(embedded["batch"]) == [2, 32, 2, 32] and (embedded["threads"] == 1).all()
    # the default loop (fused_step=auto: eager on a CPU) and the per-step loop, each against the hand loop
    assert list(embedded["fused_step"]) == ["auto", "auto", "off", "off"]
    assert list(embedded["loop"]) == ["eager", "eager", "per-step", "per-step"]
    assert (embedded[["hand_ms", "normlab_ms", "normlab_over_hand"]] > 0).all().all()
    assert list(embedded["reps"]) == [2] * 4 and (embedded["spread"] >= 0).all()
    steps = pd.read_csv(out / "throughput.csv")
    assert list(steps["batch"]) == [2] and (steps["normlab_over_hand"] > 0).all()
    assert list(steps["reps"]) == [2] and (steps["spread"] >= 0).all()  # interleaved repetitions, their spread
    assert not agreement_main([str(out), str(out)])["throughput.csv"]["rel_diff"].any()  # a run agrees with itself
    for table in (embedded, steps):
        assert table["machine"].str.contains("CPU").all() and table["command"].str.startswith("python -m").all()


def test_a_cpu_step_time_is_the_median_of_the_steps_and_a_gpu_one_the_synchronized_block():
    from benchmarks.timing import per_step

    stalled = [0.010, 0.011, 0.500, 0.010, 0.012]  # one step stalled by the VM
    assert per_step(torch.device("cpu"), stalled, sum(stalled), 5) == 0.011
    assert per_step(torch.device("cuda"), [], 1.0, 4) == 0.25  # asynchronous steps: the block's mean


def test_hand_blocks_interleave_with_normlab_steps_and_leave_their_time_out_of_normlabs():
    from types import SimpleNamespace

    from benchmarks.step_loops import InterleavedBlocks, block_size

    class FakeHand:
        calls = 0

        def step(self) -> float:
            FakeHand.calls += 1
            return 0.001

    blocks = InterleavedBlocks(FakeHand(), block=2, warmup=1)
    blocks.on_train_start(None, None)
    assert FakeHand.calls == 1  # the hand loop's warmup
    for step in range(1, 8):  # trainer.global_step after each of 7 steps
        blocks.on_train_batch_end(SimpleNamespace(global_step=step), None)
    assert len(blocks.hand_times) == 2 * 3  # after steps 2, 4, 6: a block of 2 hand steps each
    assert len(blocks.normlab_times) == 6  # steps 2..7; step 1 is warmup
    assert max(blocks.normlab_times) < 0.05  # the hand blocks ran outside normlab's intervals
    assert blocks.medians()[1] == 0.001
    assert [block_size(n) for n in (4, 40, 600)] == [1, 5, 10]


def test_hand_blocks_pair_each_fused_epoch_with_as_many_hand_steps_and_skip_the_first():
    """The fused loop's Lightning batch is an epoch: its time per step is paired with a hand block of the
    epoch's steps, per step; the first epoch (which builds the loop) is warm-up."""
    from types import SimpleNamespace

    from benchmarks.step_loops import InterleavedBlocks

    calls = []

    class FakeHand:
        def step(self) -> float:
            calls.append(1)
            return 0.002

    module = SimpleNamespace(fused="eager", loop=SimpleNamespace(steps_per_epoch=4))
    blocks = InterleavedBlocks(FakeHand(), block=2, warmup=0)
    for epoch in range(3):
        trainer = SimpleNamespace(global_step=4 * (epoch + 1), current_epoch=epoch)
        blocks.on_train_batch_start(trainer, module)
        blocks.on_train_batch_end(trainer, module)
    assert len(calls) == 2 * 4  # epochs 1 and 2, four hand steps each
    assert len(blocks.normlab_times) == 2 and blocks.hand_times == [0.002, 0.002]


def test_the_packing_benchmark_writes_its_table_with_the_machine_and_command(tmp_path, capsys, monkeypatch):
    """`make bench`'s packing table end to end with tiny step counts. Every timing is stubbed (the blocks:
    a fixed cost per member scaled by a seeded jitter per block; the bench's clocks: 5 ms a reading), so no
    assertion depends on the machine's timing noise or its clock's resolution: under load two measured
    rounds can give equal log ratios (``rel_se`` 0) or a step of no measurable CPU time."""
    import itertools
    import random
    import types

    import pandas as pd

    from benchmarks import packing

    jitter, ticks = random.Random(0), itertools.count()

    def clock() -> float:
        return 0.005 * next(ticks)

    def block(cell: packing.Cell, steps: int) -> float:  # seconds per step: K members cost K^0.8 of one
        return 0.01 * cell.k**0.8 * jitter.uniform(0.95, 1.05)

    measured = packing.Cell.block
    monkeypatch.setattr(packing, "time", types.SimpleNamespace(perf_counter=clock))
    monkeypatch.setattr(packing.Cell, "block", block)
    argv = ["--models", "resnet8", "--norms", "bn", "--batches", "2,4", "--ks", "1,2", "--steps", "3"]
    budget = ["--min-rounds", "2", "--min-seconds", "0", "--max-seconds", "0"]  # stop after 2 rounds
    every = ["--tolerance", "inf"]  # two rounds are too few to tell the undisturbed state: count every block
    packing.main([*argv, *budget, *every, "--warmup", "0", "--device", "cpu", "--out", str(tmp_path)])
    table = pd.read_csv(tmp_path / "packing.csv")
    assert list(table["K"]) == [1, 2, 1, 2] and list(table["batch"]) == [2, 2, 4, 4]
    assert (table["runs_per_hour_ratio"] > 0).all() and table["seconds"].nunique() == 1  # one window for all
    assert list(table["kept"]) == [2] * 4 and (table["ratio_all_blocks"] == table["runs_per_hour_ratio"]).all()
    assert (table["ci95_low"] <= table["runs_per_hour_ratio"]).all()
    assert (table["runs_per_hour_ratio"] <= table["ci95_high"]).all() and (table["rel_se"] > 0).all()
    assert list(table["blocks"]) == [2] * 4 and list(table["steps"]) == [3] * 4
    assert (table["clock"] == "cpu").all()  # one thread on a CPU: the process's CPU time
    assert table["command"].str.startswith("python -m benchmarks.packing").all() and table["machine"].notna().all()
    with pytest.raises(SystemExit):  # refused before any model is built, one line naming the value
        packing.main([*argv, "--tolerance", "-0.1", "--out", str(tmp_path / "refused")])
    assert "--tolerance=-0.1: allowed are numbers >= 0" in capsys.readouterr().err
    assert not (tmp_path / "refused").exists()
    monkeypatch.setattr(packing.Cell, "block", measured)  # the real block, its steps timed on the stub clock
    cell = packing.Cell("resnet8", "bn", 2, 2, torch.device("cpu"), clock=clock)  # each step: 5 ms on its clock
    assert cell.calibrate(0.0, 0.0) == 1 and cell.calibrate_seconds == pytest.approx(0.005)  # one step a block
    assert cell.calibrate(0.0, 0.0, min_steps=3) == 3  # the bench's default: a median of three steps
    with pytest.raises(SystemExit):
        packing.main([*argv, "--min-block-steps", "0", "--out", str(tmp_path / "refused")])
    assert "--min-block-steps=0: allowed are integers >= 1" in capsys.readouterr().err
    assert cell.block(4) == pytest.approx(0.005)  # a block's step: the median of its steps' own times


def test_each_packed_block_is_compared_with_the_reference_blocks_right_before_and_after_it():
    from benchmarks.ratios import REFERENCE, bracketed_log_ratios

    # the machine slows by 10 % a block: each block's time is its speed x the step's own cost
    costs = [(REFERENCE, 0.010), (4, 0.020), (REFERENCE, 0.010), (1, 0.010), (REFERENCE, 0.010), (8, 0.030)]
    sequence = [(arm, cost * 1.1**position) for position, (arm, cost) in enumerate([*costs, (REFERENCE, 0.010)])]
    logs = bracketed_log_ratios(sequence)
    assert sorted(logs) == [1, 4, 8]
    assert [round(math.exp(value), 9) for k in (4, 1, 8) for value in logs[k]] == [2.0, 1.0, round(8 / 3, 9)]
    unweighted = bracketed_log_ratios(sequence, weighted=False)  # a plain ratio of times (the sweep bench)
    assert [round(math.exp(value), 9) for k in (4, 1, 8) for value in unweighted[k]] == [0.5, 1.0, round(1 / 3, 9)]
    with pytest.raises(ValueError, match="block 1 of the sequence is not bracketed"):
        bracketed_log_ratios([(REFERENCE, 0.01), (4, 0.02), (4, 0.02)])


def test_a_disturbed_machine_does_not_move_a_ratio_counted_on_its_undisturbed_blocks():
    from benchmarks.packing import cell_rows
    from benchmarks.ratios import REFERENCE, Budget, bracketed_log_ratios, undisturbed

    # two states of the machine, as this VM's: undisturbed, a one-member step 10 ms and a packed K = 8 step
    # 40 ms (ratio 2.0); disturbed, 16 ms and 52 ms (ratio 2.46). Each block jitters by up to 4 %.
    states = {False: {REFERENCE: 0.010, 8: 0.040}, True: {REFERENCE: 0.016, 8: 0.052}}
    jitter = [1.00, 1.03, 0.99, 1.04, 1.01, 0.98, 1.02]

    def run(disturbed_rounds: set[int], tolerance: float) -> dict:  # 24 rounds: a K = 8 block, a reference
        sequence = []
        for position in range(49):
            arm = REFERENCE if position % 2 == 0 else 8
            state = min(position // 2, 23) in disturbed_rounds
            sequence.append((arm, states[state][arm] * jitter[position % len(jitter)]))
        return {row["K"]: row for row in cell_rows([sequence], Budget(precision=0.01, min_rounds=3), tolerance)}[8]

    calm_rounds, busy_rounds = set(range(0, 24, 6)), {r for r in range(24) if r % 4 < 2}  # 1/6 vs 1/2 disturbed
    calm, busy = run(calm_rounds, 0.15), run(busy_rounds, 0.15)
    assert calm["kept"] < 24 and busy["kept"] < calm["kept"] and calm["precision_met"]
    assert not run(set(range(0, 24, 2)), 0.15)["precision_met"]  # every triple spans both states: none counted
    assert calm["runs_per_hour_ratio"] == pytest.approx(2.0, rel=0.03)
    assert busy["runs_per_hour_ratio"] == pytest.approx(calm["runs_per_hour_ratio"], rel=0.03)  # the state share
    assert busy["ratio_all_blocks"] > calm["ratio_all_blocks"] > 2.02  # moves the ratio over every block
    everything = run(busy_rounds, math.inf)
    assert everything["kept"] == 24 and everything["runs_per_hour_ratio"] == everything["ratio_all_blocks"]

    sequence = [(REFERENCE, 0.010), (8, 0.040), (REFERENCE, 0.016), (8, 0.041), (REFERENCE, 0.0105)]
    assert undisturbed(sequence, 0.15) == [True, True, False, True, True]
    assert undisturbed(sequence) == [True] * 5  # no tolerance: every block
    assert bracketed_log_ratios(sequence, tolerance=0.15) == {8: []}  # both triples hold the disturbed block
    with pytest.raises(ValueError, match=r"tolerance=-0\.1: allowed are numbers >= 0"):
        undisturbed(sequence, -0.1)


def test_rounds_of_every_cell_run_in_turn_and_count_against_the_fastest_block_of_all_rounds(monkeypatch):
    from benchmarks import packing
    from benchmarks.ratios import REFERENCE, Budget, pooled_log_ratios

    # a calm round, then a disturbed one: its blocks are slow against the calm round's, so none counts
    calm, disturbed = (
        [(REFERENCE, 0.010), (8, 0.040), (REFERENCE, 0.010)],
        [(REFERENCE, 0.015), (8, 0.05), (REFERENCE, 0.015)],
    )
    assert [round(math.exp(v), 6) for v in pooled_log_ratios([calm, disturbed], tolerance=0.15)[8]] == [2.0]
    assert [round(math.exp(v), 6) for v in pooled_log_ratios([calm, disturbed])[8]] == [2.0, 2.4]

    order = []  # which cell each round timed, in order
    monkeypatch.setattr(packing.Cell, "calibrate", lambda cell, seconds, warmup, min_steps: 1)
    monkeypatch.setattr(
        packing.Group, "run_round", lambda group: order.append(group.batch) or group.rounds.append(calm)
    )
    budget = Budget(precision=0.01, min_rounds=3, min_seconds=0.0, max_seconds=60.0)
    device = torch.device("cpu")
    table = packing.packing_table(device, ["resnet8"], ["bn"], [2, 4], [8], None, 0.0, budget, tolerance=0.15)
    assert order == [2, 4, 2, 4, 2, 4]  # one round of each cell in turn, until every ratio met the budget
    assert list(table["runs_per_hour_ratio"]) == [2.0, 2.0] and table["precision_met"].all()


def test_a_ratio_is_the_mean_log_ratio_with_its_t_interval_and_rounds_stop_at_the_precision_asked():
    from benchmarks.packing import cell_rows
    from benchmarks.ratios import REFERENCE, Budget, Estimate, bracketed_rounds

    estimate = Estimate.of([math.log(2.0) + e for e in (-0.02, 0.0, 0.02)])
    assert estimate.ratio == pytest.approx(2.0) and estimate.rel_se == pytest.approx(0.02 / math.sqrt(3))
    half = 4.302653 * estimate.rel_se  # Student t, 2 degrees of freedom, 97.5 %
    assert estimate.low == pytest.approx(2.0 * math.exp(-half), rel=1e-6)
    assert estimate.high == pytest.approx(2.0 * math.exp(half), rel=1e-6)
    assert math.isinf(Estimate.of([0.1]).rel_se)  # one block: no error known, never precise enough

    budget = Budget(precision=0.01, min_rounds=3, min_seconds=0.0, max_seconds=60.0)
    precise, loose = {2: Estimate(1.5, 1.4, 1.6, 0.005, 3)}, {2: Estimate(1.5, 1.0, 2.0, 0.2, 10)}
    assert not budget.done(2, 1.0, precise) and budget.done(3, 1.0, precise)  # at least min_rounds
    assert not budget.done(10, 1.0, {2: Estimate(1.5, 1.4, 1.6, 0.005, 2)})  # and min_rounds counted blocks
    assert not budget.done(10, 59.0, loose) and budget.done(10, 60.0, loose)  # max_seconds ends it anyway

    def steady(seconds: float):  # a model whose every block steps in `seconds`: the log ratios do not vary
        return lambda: seconds

    arms = {1: steady(0.010), 4: steady(0.025)}
    sequence, rounds, _ = bracketed_rounds(steady(0.010), arms, budget)
    assert rounds == 3 and len(sequence) == 1 + 2 * len(arms) * rounds  # stopped as soon as allowed
    assert [arm for arm, _ in sequence[:5]] == [REFERENCE, 1, REFERENCE, 4, REFERENCE]
    rows = {row["K"]: row for row in cell_rows([sequence], budget)}
    assert rows[4]["runs_per_hour_ratio"] == 1.6 and rows[1]["runs_per_hour_ratio"] == 1.0
    assert rows[4]["precision_met"] and rows[4]["step_ms_packed"] == 25.0 and rows[4]["step_ms_one"] == 10.0


def test_a_one_thread_cpu_step_is_timed_by_cpu_time_so_time_lost_to_other_work_is_not_counted():
    import time

    from benchmarks.timing import CLOCKS, step_clock, timed_steps

    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    assert [step_clock(cpu, 1), step_clock(cpu, 2), step_clock(gpu, 1)] == ["cpu", "wall", "wall"]
    assert step_clock(cpu, 1, "wall") == "wall"
    for bad, message in (("fast", "clock='fast': allowed are auto, cpu, wall"), ("cpu", "not a GPU step")):
        with pytest.raises(ValueError, match=message):
            step_clock(gpu, 1, bad)
    waiting = functools.partial(time.sleep, 0.02)  # a step that waits, as a process does while descheduled
    assert min(timed_steps(waiting, 3, cpu, CLOCKS["wall"])) >= 0.02
    assert max(timed_steps(waiting, 3, cpu, CLOCKS["cpu"])) < 0.01


def test_the_sweep_bench_brackets_each_parallel_sweep_by_sequential_ones_until_the_speedup_is_precise(
    monkeypatch, tmp_path
):
    from benchmarks import sweep_rate, throughput
    from benchmarks.ratios import Budget

    launched = []
    clock = iter(range(1000))  # perf_counter: each call one second later

    real_run = sweep_rate.subprocess.run

    def run(command, **kwargs):  # a training sweep is stubbed; anything else (uname -p, git) runs
        if "src.train" not in command:
            return real_run(command, **kwargs)
        launched.append(command)
        for _ in range(29 if "hydra/launcher=parallel" in command else 39):  # 30 s parallel, 40 s sequential
            next(clock)

    monkeypatch.setattr(sweep_rate.subprocess, "run", run)
    monkeypatch.setattr(sweep_rate.time, "perf_counter", lambda: float(next(clock)))
    budget = Budget(precision=0.02, min_rounds=3, min_seconds=0.0, max_seconds=1e9)
    table, blocks = sweep_rate.sweep_throughput(
        jobs=2, runs_dir=tmp_path / "multirun", budget=budget, study=("norm=bn,gn", "batch=8,16,32", "epochs=1")
    )
    assert ["hydra/launcher=parallel" in command for command in launched] == [False, True] * 3 + [False]
    assert blocks["launcher"].tolist() == ["sequential", "parallel"] * 3 + ["sequential"]
    assert blocks["seconds"].tolist() == [40.0, 30.0] * 3 + [40.0]  # in the order they ran
    assert (blocks["cpu_seconds"] >= 0).all() and blocks["block"].tolist() == list(range(7))
    assert all("norm=bn,gn" in command and "batch=8,16,32" in command for command in launched)
    assert {next(a for a in command if a.startswith("hydra.sweep.dir=")) for command in launched} == {
        f"hydra.sweep.dir={tmp_path / 'multirun' / name}" for name in ("bench_sequential", "bench_parallel")
    }  # the sweeps write where they are told
    table = table.set_index("launcher")
    assert (table["runs"] == 6).all() and table["sweeps"].tolist() == [4, 3]
    assert table.loc["parallel", "speedup"] == pytest.approx(40 / 30, rel=1e-3)  # clock reads add ~1 s each
    assert table.loc["parallel", "precision_met"] and table.loc["parallel", "rel_se"] < 0.02
    assert table.loc["parallel", "ci95_low"] <= table.loc["parallel", "speedup"] <= table.loc["parallel", "ci95_high"]
    assert table.loc["sequential", "speedup"] == 1.0 and table.loc["sequential", "rel_se"] == 0.0
    assert table.loc["parallel", ["seconds", "seconds_min", "seconds_max"]].tolist() == [30.0] * 3

    launched.clear()  # the sweep bench alone, from the command line
    limits = ["--sweep-min-rounds", "2", "--sweep-max-seconds", "0"]
    throughput.main(
        ["--no-embedded", "--no-resnet", *limits, "--out", str(tmp_path / "bench"), "--runs", str(tmp_path)]
    )
    assert len(launched) == 5  # the default 900 s window is capped by --sweep-max-seconds
    assert sorted(path.name for path in (tmp_path / "bench").iterdir()) == ["sweep.csv", "sweep_blocks.csv"]
