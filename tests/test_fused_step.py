"""The fused step (src/training/fused_step.py) is torch.optim.SGD on each member alone: a compiled packed
run and the same members trained alone, eager, agree to float tolerance over 24 steps for every packable
norm (issue 31); the fused epoch loop trains a pack end to end and resumes exactly."""

from __future__ import annotations

import copy
import functools
import math
import os

import pytest
import torch
import torch.nn.functional as F

from src.run.lifecycle import RunSpec
from src.sweep.pack import PackedNet, PackRefused, build_member, check_packable
from src.training.fused_step import FusedSGDStep, FusedStepRefused, SGDSettings, resolve_mode, sgd_settings

from .test_pack import EXTRA, PACKABLE

STEPS = 24
# make gpu-check runs the exactness tests on the GPU with NORMLAB_TEST_DEVICE=cuda (then also as one CUDA graph)
DEVICE = torch.device(os.environ.get("NORMLAB_TEST_DEVICE", "cpu"))
SETTINGS = SGDSettings(momentum=0.9, weight_decay=5e-4, nesterov=False)
BASE = (
    "dataset=digits",
    "dataset.train_size=48",
    "batch=4",
    "logger=none",
    "model.widths=[8,16]",
    "norm_groups=4",
    "trainer.accelerator=cpu",
)


def members(compose_cfg, tmp_path, norm: str, seeds=(0, 1)):
    cfgs = [compose_cfg(*BASE, f"norm={norm}", f"seed={s}", *EXTRA.get(norm, ())) for s in seeds]
    built = [build_member(RunSpec(cfg, tmp_path / str(cfg.seed))) for cfg in cfgs]
    check_packable(built)
    for b in built:
        b.net.to(DEVICE)
    return built


def batches(size: int, shape, classes: int, count: int = STEPS):
    generator = torch.Generator().manual_seed(7)
    images = torch.randn(count, size, 4, *shape, generator=generator)
    labels = torch.randint(0, classes, (count, size, 4), generator=generator)
    lrs = 0.02 * (1.0 + torch.arange(count, dtype=torch.float32) / count)  # a schedule that moves
    return images.to(DEVICE), labels.to(DEVICE), lrs.to(DEVICE)


def alone(net, images, labels, lrs, settings: SGDSettings, decay: float | None = None):
    """One member trained by itself, eager, with torch.optim.SGD: the reference."""
    wd = settings.weight_decay if decay is None else decay
    optimizer = torch.optim.SGD(
        net.parameters(), lr=0.1, momentum=settings.momentum, weight_decay=wd, nesterov=settings.nesterov
    )
    net.train()
    losses = []
    for x, y, lr in zip(images, labels, lrs, strict=True):
        for group in optimizer.param_groups:
            group["lr"] = float(lr)
        loss = F.cross_entropy(net(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss))
    return losses


def fused(nets, images, labels, lrs, settings: SGDSettings, mode: str, lr_scale=None, decay=None, backend="inductor"):
    packed = PackedNet([copy.deepcopy(n) for n in nets]).to(DEVICE).train()
    step = FusedSGDStep(
        packed, list(packed.parameters()), settings, weight_decay=decay, mode=mode, compile_backend=backend
    )
    scale = (torch.ones(len(nets)) if lr_scale is None else lr_scale).to(DEVICE)
    losses = [step(x, y, lr * scale).tolist() for x, y, lr in zip(images, labels, lrs, strict=True)]
    return packed, losses


def assert_members_agree(packed, nets, fused_losses, alone_losses, label):
    for index, net in enumerate(nets):
        assert [s[index] for s in fused_losses] == pytest.approx(alone_losses[index], rel=1e-4, abs=1e-5), label
        reference = net.state_dict()
        unpacked = packed.unpack(index, copy.deepcopy(net)).state_dict()
        for name, value in unpacked.items():
            torch.testing.assert_close(value, reference[name], rtol=1e-4, atol=1e-5, msg=f"{label}: {name}")


COMPILABLE = [n for n in PACKABLE if n != "brn"]  # BatchRenorm's clipping follows a host step count: eager
TRACED_IN_MAKE_TEST = ("gn",)  # tracing costs 5-25 s a norm on 2 cores; the rest: make test-all
INDUCTOR_IN_MAKE_TEST = ("gn",)


def compiled(norm: str, backend: str, fast: tuple[str, ...]):
    return pytest.param(norm, "compile", backend, marks=() if norm in fast else pytest.mark.slow)


MODES = [
    *[pytest.param(norm, "eager", "-") for norm in PACKABLE],
    *[compiled(norm, "aot_eager", TRACED_IN_MAKE_TEST) for norm in COMPILABLE],
    *[compiled(norm, "inductor", INDUCTOR_IN_MAKE_TEST) for norm in COMPILABLE],
    *([pytest.param(norm, "graph", "-") for norm in COMPILABLE] if DEVICE.type == "cuda" else []),
]


@pytest.mark.parametrize(("norm", "mode", "backend"), MODES)
def test_the_fused_packed_step_is_each_member_trained_alone(compose_cfg, tmp_path, norm, mode, backend):
    """24 steps of a 2-member pack (fused, eager or compiled) against each member alone with torch.optim.SGD."""
    built = members(compose_cfg, tmp_path, norm)
    nets = [b.net for b in built]
    images, labels, lrs = batches(len(nets), built[0].datamodule.input_shape, built[0].datamodule.num_classes)
    packed, fused_losses = fused(nets, images, labels, lrs, SETTINGS, mode, backend=backend)
    alone_losses = [alone(net, images[:, k], labels[:, k], lrs, SETTINGS) for k, net in enumerate(nets)]
    assert_members_agree(packed, nets, fused_losses, alone_losses, f"{norm}/{mode}")
    assert fused_losses[0][0] != pytest.approx(fused_losses[0][1])  # different members


def test_nesterov_and_per_member_learning_rates_and_weight_decay(compose_cfg, tmp_path):
    """Members that differ in learning rate or weight decay share a pack: η_k and λ_k are per member."""
    settings = SGDSettings(momentum=0.9, weight_decay=0.0, nesterov=True)
    built = members(compose_cfg, tmp_path, "gn", seeds=(0, 1, 2))
    nets = [b.net for b in built]
    images, labels, lrs = batches(len(nets), built[0].datamodule.input_shape, built[0].datamodule.num_classes)
    scale, decay = torch.tensor([1.0, 0.5, 2.0]), torch.tensor([0.0, 1e-3, 5e-4])
    packed, fused_losses = fused(nets, images, labels, lrs, settings, "eager", lr_scale=scale, decay=decay.to(DEVICE))
    alone_losses = [
        alone(net, images[:, k], labels[:, k], lrs * scale[k].to(DEVICE), settings, decay=float(decay[k]))
        for k, net in enumerate(nets)
    ]
    assert_members_agree(packed, nets, fused_losses, alone_losses, "nesterov, per-member lr and wd")


def test_the_fused_step_reads_the_sgd_config_and_refuses_what_it_does_not_implement():
    assert sgd_settings(functools.partial(torch.optim.SGD, momentum=0.9, weight_decay=1e-4)) == SGDSettings(0.9, 1e-4)
    with pytest.raises(
        FusedStepRefused, match=r"^optim.optimizer=Adam: the fused step implements torch.optim.SGD only$"
    ):
        sgd_settings(functools.partial(torch.optim.Adam))
    with pytest.raises(FusedStepRefused, match=r"^optim.optimizer.dampening=0.1"):
        sgd_settings(functools.partial(torch.optim.SGD, dampening=0.1))
    cpu = torch.device("cpu")
    assert [resolve_mode(c, cpu) for c in ("off", False, "auto", "eager", "compile")] == [
        None,
        None,
        "eager",
        "eager",
        "compile",
    ]
    assert resolve_mode("auto", cpu, compile=True) == "compile"  # compile=true: the whole step compiled
    assert resolve_mode("auto", torch.device("cuda")) == "graph"
    with pytest.raises(FusedStepRefused, match=r"^fused_step=graph on cpu: CUDA graphs need a CUDA device"):
        resolve_mode("graph", cpu)


def fused_cfgs(compose_cfg, norm: str, mode: str, *extra: str):
    base = (*BASE, "dataset.augment=crop_flip", "epochs=2", f"fused_step={mode}", *extra)
    return [compose_cfg(*base, f"norm={norm}", f"seed={s}", *EXTRA.get(norm, ())) for s in (0, 1)]


def test_a_fused_pack_trains_end_to_end_and_records_its_mode(compose_cfg, tmp_path):
    """fused_step=eager: one Lightning step per epoch, the epoch's 12 steps inside it; records as usual."""
    from src.sweep.pack import train_pack

    cfgs = fused_cfgs(compose_cfg, "bn", "eager")
    specs = [RunSpec(cfg, tmp_path / f"seed={cfg.seed}", [f"seed={cfg.seed}"]) for cfg in cfgs]
    outcomes = train_pack(specs)
    records = [o.record for o in outcomes]
    assert [r["status"] for r in records] == ["completed", "completed"], [o.error for o in outcomes]
    for record in records:
        assert record["timing"]["fused_step"] == "eager" and record["timing"]["train_steps"] == 2 * (48 // 4)
        assert [p["epoch"] for p in record["curve"]] == [0, 1]
        assert all(math.isfinite(p["train_loss"]) and math.isfinite(p["val_error"]) for p in record["curve"])
        # the lr after each epoch's last step, as torch's scheduler reports it: cosine at 1/2, then at 1
        assert [p["lr"] for p in record["curve"]] == pytest.approx([0.1 * 4 / 32 * 0.5, 0.0], abs=1e-9)
    assert records[0]["curve"][0]["train_loss"] != pytest.approx(records[1]["curve"][0]["train_loss"])


def test_a_fused_learning_rate_follows_the_unpacked_rule(compose_cfg, tmp_path):
    """The fused loop's per-step learning rate is lr_factor's, the rule torch's scheduler follows."""
    from src.training.module import lr_factor, lr_rule

    cfg = fused_cfgs(compose_cfg, "gn", "eager", "optim.warmup_epochs=1")[0]
    from src.training.experiment import lr_arguments

    rule = lr_rule(global_batch=4, **lr_arguments(cfg.optim))
    factor = lr_factor(rule, total_steps=24, max_epochs=2)
    assert factor(0) == 0.0 and factor(6) == pytest.approx(0.5 * rule.schedule(0.25))
    assert factor(12) == pytest.approx(rule.schedule(0.5))


def test_an_interrupted_fused_pack_resumes_exactly(compose_cfg, tmp_path, monkeypatch):
    """Momentum, the step count and each member's RNG are in the checkpoint: a resumed fused pack ends
    where the uninterrupted one does."""
    from .test_pack import interrupted_and_resumed

    _, _, produced = interrupted_and_resumed(fused_cfgs(compose_cfg, "gn", "eager"), tmp_path, monkeypatch)
    assert produced[0]["timing"]["train_steps"] == 24


def test_a_pack_with_batch_renorm_runs_its_fused_step_eager(compose_cfg):
    from src.sweep.pack.training import fused_mode

    class Built:
        def __init__(self, net):
            self.net = net

    from src.norms import BatchRenorm2d

    cfg = compose_cfg(*BASE, "fused_step=auto", "compile=true")
    assert fused_mode(cfg, [Built(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 1)))]) == "compile"
    assert fused_mode(cfg, [Built(torch.nn.Sequential(BatchRenorm2d(1)))]) == "eager"


def test_a_single_run_steps_fused_as_a_pack_of_one(compose_cfg, tmp_path):
    """K = 1 with the network's own (unstacked) parameters: torch.optim.SGD's arithmetic."""
    built = members(compose_cfg, tmp_path, "gn", seeds=(3,))
    net = built[0].net
    images, labels, lrs = batches(1, built[0].datamodule.input_shape, built[0].datamodule.num_classes)
    mine = copy.deepcopy(net).to(DEVICE).train()
    step = FusedSGDStep(lambda x: mine(x[0]).unsqueeze(0), list(mine.parameters()), SETTINGS, members=1)
    losses = [float(step(x, y, lr.reshape(1))[0]) for x, y, lr in zip(images, labels, lrs, strict=True)]
    # (the float() copies each loss out before a CUDA graph's next replay overwrites it)
    assert losses == pytest.approx(alone(net, images[:, 0], labels[:, 0], lrs, SETTINGS), rel=1e-4, abs=1e-5)
    for name, value in mine.state_dict().items():
        torch.testing.assert_close(value, net.state_dict()[name], rtol=1e-4, atol=1e-5, msg=name)


def test_a_single_fused_run_trains_records_and_resumes(compose_cfg, tmp_path):
    """python -m src.train fused_step=eager: trains, its record says so, and it keeps the unfused config hash."""
    from src.training.single import train

    cfg = fused_cfgs(compose_cfg, "bn", "eager")[0]
    record = train(cfg, tmp_path / "run")
    assert record["status"] == "completed", record.get("error")
    assert record["timing"]["fused_step"] == "eager" and record["timing"]["train_steps"] == 24
    assert [p["epoch"] for p in record["curve"]] == [0, 1] and record["curve"][1]["lr"] < record["curve"][0]["lr"]
    again = train(cfg, tmp_path / "run")
    assert again.get("skipped")  # steering: the same config hash as an unfused run of this config
    from src.run.config_keys import config_hash

    unfused = compose_cfg(*BASE, "dataset.augment=crop_flip", "epochs=2", "norm=bn", "seed=0")
    assert config_hash(unfused) == config_hash(cfg)


def test_members_that_differ_in_learning_rate_share_a_fused_pack(compose_cfg, tmp_path):
    """by: seed,optim.base_lr packs a learning-rate sweep; each record carries its own lr. Without the
    fused step such a pack is refused in one line and the runs train one by one."""
    from src.sweep.launcher import group_jobs
    from src.sweep.pack import train_pack

    jobs = [["norm=gn", f"optim.base_lr={lr}", f"seed={s}"] for lr in (0.05, 0.1) for s in (0, 1)]
    assert group_jobs(jobs, "seed") == [[0, 1], [2, 3]]
    assert group_jobs(jobs, "seed,optim.base_lr") == [[0, 1, 2, 3]]
    with pytest.raises(ValueError, match=r"^hydra.launcher.by='norm': allowed are seed, optim.base_lr"):
        group_jobs(jobs, "norm")

    def specs(mode: str):
        cfgs = [
            compose_cfg(*BASE, "epochs=1", "norm=gn", f"optim.base_lr={lr}", "seed=0", f"fused_step={mode}")
            for lr in (0.05, 0.1)
        ]
        return [RunSpec(cfg, tmp_path / mode / f"lr={cfg.optim.base_lr}", []) for cfg in cfgs]

    records = [o.record for o in train_pack(specs("eager"), by="seed,optim.base_lr")]
    assert [r["status"] for r in records] == ["completed", "completed"]
    assert records[0]["pack"]["id"] == records[1]["pack"]["id"] and records[0]["pack"]["base_lr"] == [0.05, 0.1]
    assert [r["lr"] for r in records] == pytest.approx([0.05 * 4 / 32, 0.1 * 4 / 32])  # the scaling rule
    built = [build_member(s) for s in specs("off")]
    with pytest.raises(PackRefused, match=r"^the members differ in optim.base_lr: per-member learning rates"):
        check_packable(built, fused=None)


def test_the_pack_size_probe_measures_each_k_and_picks_one_it_measured(compose_cfg):
    """size: probe times K = 1, 2, 4, … fused steps of the cell; what it picks depends on the machine, so
    the test checks the rule (a measured K, doubling, never above the group), not a value."""
    from src.sweep.launcher import PackedLauncher
    from src.sweep.probe import GAIN, probe_pack_size

    cfg = compose_cfg(*BASE, "norm=gn")
    chosen, rows = probe_pack_size(cfg, most=4, steps=2)
    assert [r.k for r in rows] == [1, 2, 4][: len(rows)] and chosen in [r.k for r in rows]
    best = max((r for r in rows if r.k <= chosen), key=lambda r: r.k)
    assert all(r.member_steps_per_s < GAIN * best.member_steps_per_s for r in rows if r.k > chosen)
    assert probe_pack_size(cfg, most=1, steps=1)[0] == 1
    with pytest.raises(ValueError, match=r"^hydra.launcher.size='big': allowed are auto, probe or an integer >= 1$"):
        PackedLauncher(size="big")


def test_cells_that_differ_only_in_length_share_one_probe(monkeypatch):
    """A study's 16- and 8-epoch arms train the same step: size=probe measures it once, and each arm's
    launch plan estimates its own pack time from that one probe; another norm or batch is probed again, and
    so is a group too small for the pack size measured."""
    from omegaconf import OmegaConf

    import src.sweep.probe as probe_module
    from src.sweep.launcher import PackedLauncher
    from src.sweep.probe import Probe, ProbeRow

    probed = []

    def fake_probe(cfg, most):
        probed.append((list(cfg.hydra.overrides.task), most))
        return Probe(4, [ProbeRow(4, 100.0, 40.0)], steps_per_epoch=10, epochs=int(cfg.epochs))

    monkeypatch.setattr(probe_module, "probe_cell", fake_probe)
    launcher = PackedLauncher(size="probe")

    def cell(*overrides: str, members: int = 8) -> int:
        task = [*overrides, "seed=0"]
        values = dict(o.split("=") for o in task)
        cfg = OmegaConf.create({"hydra": {"overrides": {"task": task}}, "epochs": int(values["epochs"])})
        return launcher._pack_size(cfg, members)

    assert [cell("norm=gn", "epochs=16"), cell("norm=gn", "epochs=8"), cell("norm=bn", "epochs=8")] == [4, 4, 4]
    assert [task for task, _ in probed] == [["norm=gn", "epochs=16", "seed=0"], ["norm=bn", "epochs=8", "seed=0"]]
    assert [group["pack_seconds"] for group in launcher.plan] == [16.0, 8.0, 8.0]  # 100 ms × 10 steps × epochs
    assert all(group["probe_seconds"] >= 0 for group in launcher.plan)  # what each probe cost, in the plan
    cell("norm=gn", "epochs=4", members=2)  # a group of 2 cannot take the 4 measured: probed for its 2
    assert len(probed) == 3 and probed[-1][1] == 2


def test_an_epoch_is_drawn_per_member_on_the_device_with_its_images_and_labels_together():
    """EpochData: (S, K, N, C, H, W), the last partial batch dropped, every image with its own label, each
    member's order from its own RNG (the same state gives the same epoch)."""
    from types import SimpleNamespace

    from src.training.epoch_loop import EpochData

    count, batch = 10, 4
    images = torch.arange(count, dtype=torch.uint8).reshape(count, 1, 1, 1).expand(count, 1, 2, 2).contiguous()
    split = SimpleNamespace(tensors=(images, torch.arange(count)))
    member = SimpleNamespace(
        splits={"train": split}, augment=None, mean=torch.zeros(1, 1, 1, 1), std=torch.ones(1, 1, 1, 1)
    )
    states = [torch.Generator().manual_seed(s).get_state() for s in (0, 1, 0)]

    def context(index):
        def enter():
            import contextlib

            @contextlib.contextmanager
            def swapped():
                outside = torch.get_rng_state()
                torch.set_rng_state(states[index])
                try:
                    yield
                finally:
                    states[index] = torch.get_rng_state()
                    torch.set_rng_state(outside)

            return swapped()

        return enter

    data = EpochData([member] * 3, batch, torch.device("cpu"), [context(i) for i in range(3)])
    drawn, labels = data.draw()
    assert drawn.shape == (2, 3, batch, 1, 2, 2) and labels.shape == (2, 3, batch)  # 10 // 4 = 2 steps
    assert torch.equal((drawn[..., 0, 0, 0] * 255).round().long(), labels)  # each image with its label
    orders = [labels[:, k].flatten().tolist() for k in range(3)]
    assert orders[0] == orders[2] != orders[1] and len(set(orders[0])) == 2 * batch
