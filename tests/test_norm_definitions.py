"""Every norm of conf/norm/ against its paper's definition, written out independently here.

The expected values are computed in the tests from the definitions (means, variances, singular values),
never with the implementation's own helpers. The layers are built through the Hydra configs, as
training builds them, so the YAMLs are checked too.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Iterator

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn
from torch.func import functional_call

from src.norms import (
    BatchRenorm2d,
    FilterResponseNorm2d,
    GhostBatchNorm2d,
    MeanOnlyBatchNorm2d,
    Normalization,
    PixelNorm,
    SwitchableNorm2d,
    SyncBatchNorm2d,
    WeightStandardization,
    checks,
    describe_norm_layers,
    group_norm,
    spectral_norm,
    weight_norm,
)
from src.norms.checks import FOREIGN_RULES, check_arguments, config_rules, rules_for

from .conftest import config_options

NORMS = config_options("norm")


@pytest.fixture(autouse=True)
def _seed_and_one_thread() -> Iterator[None]:
    """Seed every test; one intra-op thread (tiny tensors, shared 2-core machines: threads only contend)."""
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def normalize(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-5) -> torch.Tensor:
    """(x − mean) / sqrt(biased var + eps) over ``dims``."""
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def per_channel(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(1, -1, 1, 1)


def norm_from_config(compose_cfg: Callable, name: str, *overrides: str) -> Normalization:
    norm = instantiate(compose_cfg(f"norm={name}", *overrides).norm)
    assert isinstance(norm, Normalization) and norm.name == name
    return norm


def layer_from_config(compose_cfg: Callable, name: str, channels: int, *overrides: str) -> nn.Module:
    return norm_from_config(compose_cfg, name, *overrides)(channels)


def randomize_affine(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    return per_channel(layer.weight.detach()), per_channel(layer.bias.detach())


def close(actual: torch.Tensor, expected: torch.Tensor, tol: float = 1e-5) -> None:
    torch.testing.assert_close(actual, expected, atol=tol, rtol=tol)


# --------------------------------------------------------------------------------------------------
# spectral normalization


def test_spectral_norm_makes_the_largest_singular_value_one(compose_cfg):
    norm = norm_from_config(compose_cfg, "spectral")
    model = norm.apply_weight(nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 10)))
    x = torch.randn(4, 3, 6, 6)
    for _ in range(50):  # one power iteration per training forward
        model(x)
    model.eval()
    for layer in (model[0], model[2]):
        matrix = layer.weight.reshape(layer.weight.shape[0], -1)  # conv: (out, in·kh·kw), as in the paper
        assert torch.linalg.matrix_norm(matrix, 2).item() == pytest.approx(1.0, abs=1e-3)
        raw = layer.parametrizations.weight.original
        sigma = torch.linalg.matrix_norm(raw.reshape(raw.shape[0], -1), 2)
        close(layer.weight, raw / sigma, tol=1e-4)


def test_spectral_norm_worked_example(compose_cfg):
    # W = ones(4, 3) as (out, in): rank one, σ = sqrt(4·3) = √12 ≈ 3.464. On inputs of ones each output is
    # 1+1+1 = 3.0 without normalization and 3.0/√12 ≈ 0.866 with it.
    layer = nn.Linear(3, 4, bias=False)
    with torch.no_grad():
        layer.weight.fill_(1.0)
    assert torch.linalg.matrix_norm(layer.weight, 2).item() == pytest.approx(math.sqrt(12), abs=1e-5)
    x = torch.ones(3, 3)
    close(layer(x), torch.full((3, 4), 3.0))
    norm_from_config(compose_cfg, "spectral").apply_weight(layer)
    close(layer(x), torch.full((3, 4), 3.0 / math.sqrt(12)))
    assert layer(x)[0, 0].item() == pytest.approx(0.866, abs=1e-3)
    layer.eval()
    close(layer(x), torch.full((3, 4), 3.0 / math.sqrt(12)))


def test_spectral_norm_does_one_power_iteration_per_training_step_and_none_in_eval(compose_cfg):
    layer = norm_from_config(compose_cfg, "spectral").apply_weight(nn.Linear(6, 5))
    state = layer.parametrizations.weight[0]
    with torch.no_grad():  # start from vectors far from converged
        state._u.copy_(F.normalize(torch.randn(5), dim=0))
        state._v.copy_(F.normalize(torch.randn(6), dim=0))
    w = layer.parametrizations.weight.original.detach()
    x = torch.randn(7, 6)

    layer.eval()  # eval: σ = uᵀ W v from the stored u, v, which stay unchanged
    u, v = state._u.clone(), state._v.clone()
    close(layer(x), x @ (w / (u @ w @ v)).T + layer.bias)
    assert torch.equal(state._u, u) and torch.equal(state._v, v)

    layer.train()  # one training forward = one power-iteration step: u ← Wv/‖Wv‖, then v ← Wᵀu/‖Wᵀu‖
    out = layer(x)
    u1 = F.normalize(w @ v, dim=0)
    v1 = F.normalize(w.T @ u1, dim=0)
    close(state._v, v1)
    close(state._u, u1)
    close(out, x @ (w / (u1 @ w @ v1)).T + layer.bias)


# --------------------------------------------------------------------------------------------------
# weight normalization (+ mean-only BN)


def test_weight_norm_filters_have_norm_g_and_the_direction_of_v(compose_cfg):
    model = nn.Sequential(nn.Conv2d(3, 8, 3), nn.Flatten(), nn.Linear(8, 4))
    initial = [model[0].weight.detach().clone(), model[2].weight.detach().clone()]
    norm_from_config(compose_cfg, "wn").apply_weight(model)
    for layer, w0 in zip((model[0], model[2]), initial, strict=True):
        close(layer.weight, w0)  # g starts at ‖v‖: the layer starts with its initial weight
        g = layer.parametrizations.weight.original0
        v = layer.parametrizations.weight.original1
        with torch.no_grad():
            g.uniform_(0.5, 2.0)
            v.mul_(torch.rand(v.shape[0], *[1] * (v.dim() - 1)) * 3 + 0.1)  # rescaling a row of V keeps W's direction
        w = layer.weight.reshape(layer.weight.shape[0], -1)
        close(w.norm(dim=1), g.reshape(-1))
        v_rows = v.reshape(v.shape[0], -1)
        close(w, g.reshape(-1, 1) * v_rows / v_rows.norm(dim=1, keepdim=True))


def small_cnn(compose_cfg, name: str, *overrides: str) -> tuple[Normalization, nn.Module]:
    cfg = compose_cfg(f"norm={name}", "model.widths=[8,16]", *overrides)
    norm = instantiate(cfg.norm)
    net = instantiate(cfg.model, input_shape=(1, 8, 8), num_classes=10, norm=norm)
    return norm, norm.apply_weight(net)


def test_weight_norm_output_of_a_sample_does_not_depend_on_the_batch(compose_cfg):
    _, net = small_cnn(compose_cfg, "wn")
    x = torch.randn(6, 1, 8, 8)
    net.train()
    close(net(x)[:1], net(x[:1]))
    close(net(x)[3:4], net(torch.cat([x[3:4], torch.randn(5, 1, 8, 8)]))[:1])


def test_mean_only_batch_norm_subtracts_the_batch_mean_and_adds_a_bias(compose_cfg):
    norm = norm_from_config(compose_cfg, "wn_mbn")
    assert norm.batch_dependent and norm.weight is not None
    layer = norm(4)
    assert isinstance(layer, MeanOnlyBatchNorm2d)
    with torch.no_grad():
        layer.bias.uniform_(-1, 1)
    bias = per_channel(layer.bias.detach())
    x = torch.randn(8, 4, 3, 3) * 3 + 2
    mean = x.mean(dim=(0, 2, 3))
    out = layer(x)
    close(out, x - per_channel(mean) + bias)
    close(out.mean(dim=(0, 2, 3)), layer.bias.detach())  # no variance division: only the mean moves
    close(out.var(dim=(0, 2, 3)), x.var(dim=(0, 2, 3)), tol=1e-4)
    close(layer.running_mean, 0.1 * mean)
    layer.eval()
    close(layer(x), x - per_channel(0.1 * mean) + bias)
    assert not hasattr(layer, "weight") or layer.weight is None


# --------------------------------------------------------------------------------------------------
# pixel normalization


def test_pixel_norm_gives_unit_mean_square_over_channels_and_has_no_parameters(compose_cfg):
    layer = layer_from_config(compose_cfg, "pixel", 6)
    assert isinstance(layer, PixelNorm)
    assert list(layer.parameters()) == []
    x = torch.randn(3, 6, 4, 5) * 4
    out = layer(x)
    close(out.pow(2).mean(dim=1), torch.ones(3, 4, 5))
    close(out, x / torch.sqrt(x.pow(2).mean(dim=1, keepdim=True) + 1e-8))
    layer.eval()
    close(layer(x), out)


# --------------------------------------------------------------------------------------------------
# switchable normalization


def set_mixture(layer: SwitchableNorm2d, mean_logits: list[float], var_logits: list[float]) -> None:
    with torch.no_grad():
        layer.mean_logits.copy_(torch.tensor(mean_logits))
        layer.var_logits.copy_(torch.tensor(var_logits))


@pytest.mark.parametrize(("source", "dims"), [(0, (2, 3)), (1, (1, 2, 3)), (2, (0, 2, 3))], ids=["in", "ln", "bn"])
def test_switchable_norm_with_one_hot_weights_is_in_ln_or_bn(compose_cfg, source, dims):
    layer = layer_from_config(compose_cfg, "switchable", 6)
    assert isinstance(layer, SwitchableNorm2d)
    gamma, beta = randomize_affine(layer)
    one_hot = [-100.0, -100.0, -100.0]
    one_hot[source] = 100.0
    set_mixture(layer, one_hot, one_hot)
    x = torch.randn(5, 6, 4, 4) * 2 + 1
    close(layer(x), normalize(x, dims) * gamma + beta, tol=1e-4)


def test_switchable_norm_mixes_means_and_variances_with_separate_softmax_weights(compose_cfg):
    layer = layer_from_config(compose_cfg, "switchable", 4)
    gamma, beta = randomize_affine(layer)
    set_mixture(layer, [0.3, -1.0, 1.2], [-0.5, 0.8, 0.1])
    x = torch.randn(6, 4, 3, 5) * 3 - 1
    stats = [
        (x.mean(dim=d, keepdim=True), x.var(dim=d, unbiased=False, keepdim=True))
        for d in [(2, 3), (1, 2, 3), (0, 2, 3)]
    ]
    wm = torch.softmax(torch.tensor([0.3, -1.0, 1.2]), 0)
    wv = torch.softmax(torch.tensor([-0.5, 0.8, 0.1]), 0)
    mean = sum(w * m for w, (m, _) in zip(wm, stats, strict=True))
    var = sum(w * v for w, (_, v) in zip(wv, stats, strict=True))
    close(layer(x), (x - mean) / torch.sqrt(var + 1e-5) * gamma + beta, tol=1e-4)
    # eval: BN's part is the running statistics (one BN momentum-0.1 step from (0, 1))
    bn_mean = 0.1 * x.mean(dim=(0, 2, 3))
    bn_var = 0.9 + 0.1 * x.var(dim=(0, 2, 3), unbiased=True)
    close(layer.running_mean, bn_mean)
    close(layer.running_var, bn_var, tol=1e-4)
    layer.eval()
    mean = wm[0] * stats[0][0] + wm[1] * stats[1][0] + wm[2] * per_channel(bn_mean)
    var = wv[0] * stats[0][1] + wv[1] * stats[1][1] + wv[2] * per_channel(bn_var)
    close(layer(x), (x - mean) / torch.sqrt(var + 1e-5) * gamma + beta, tol=1e-4)


def test_switchable_norm_records_its_softmaxed_mixture_weights(compose_cfg):
    layer = layer_from_config(compose_cfg, "switchable", 4)
    state = layer.record_state()
    assert state == {
        "mean_weights": {"in": pytest.approx(1 / 3), "ln": pytest.approx(1 / 3), "bn": pytest.approx(1 / 3)},
        "var_weights": {"in": pytest.approx(1 / 3), "ln": pytest.approx(1 / 3), "bn": pytest.approx(1 / 3)},
    }
    set_mixture(layer, [0.0, 1.0, 2.0], [2.0, 0.0, 0.0])
    state = layer.record_state()
    e = math.e
    assert state["mean_weights"]["bn"] == pytest.approx(e**2 / (1 + e + e**2))
    assert state["var_weights"]["in"] == pytest.approx(e**2 / (e**2 + 2))


# --------------------------------------------------------------------------------------------------
# batch renormalization


def test_batch_renorm_with_r_max_1_and_d_max_0_is_batch_norm(compose_cfg):
    layer = layer_from_config(compose_cfg, "brn", 4, "norm.layer.r_max=1.0", "norm.layer.d_max=0.0")
    assert isinstance(layer, BatchRenorm2d)
    gamma, beta = randomize_affine(layer)
    reference = nn.BatchNorm2d(4)
    reference.load_state_dict({k: v for k, v in layer.state_dict().items()})
    for _ in range(3):
        x = torch.randn(8, 4, 3, 3) * 2 + 3
        close(layer(x), normalize(x, (0, 2, 3)) * gamma + beta)
        reference(x)
    close(layer.running_mean, reference.running_mean)
    close(layer.running_var, reference.running_var)
    layer.eval(), reference.eval()
    close(layer(x), reference(x))


def test_batch_renorm_corrects_with_clipped_r_and_d_after_the_warm_up(compose_cfg):
    layer = layer_from_config(compose_cfg, "brn", 3, "norm.layer.warmup_steps=0", "norm.layer.momentum=0.0")
    gamma, beta = randomize_affine(layer)
    with torch.no_grad():
        layer.running_mean.copy_(torch.tensor([0.0, 1.0, -40.0]))
        layer.running_var.copy_(torch.tensor([1.0, 4.0, 0.25]))
    x = torch.randn(16, 3, 4, 4) * per_channel(torch.tensor([2.0, 0.5, 9.0])) + per_channel(
        torch.tensor([0.5, 1.0, 3.0])
    )
    mu_b, sigma_b = x.mean(dim=(0, 2, 3)), torch.sqrt(x.var(dim=(0, 2, 3), unbiased=False) + 1e-5)
    mu, sigma = layer.running_mean.clone(), torch.sqrt(layer.running_var + 1e-5)
    r = (sigma_b / sigma).clamp(1 / 3.0, 3.0)
    d = ((mu_b - mu) / sigma).clamp(-5.0, 5.0)
    assert r[1].item() == pytest.approx(1 / 3.0) and r[2].item() == pytest.approx(3.0) and d[2].item() == 5.0
    expected = ((x - per_channel(mu_b)) / per_channel(sigma_b) * per_channel(r) + per_channel(d)) * gamma + beta
    close(layer(x), expected, tol=1e-4)
    layer.eval()
    close(layer(x), (x - per_channel(mu)) / per_channel(sigma) * gamma + beta, tol=1e-4)


def test_batch_renorm_warm_up_grows_r_max_from_1_and_d_max_from_0_linearly(compose_cfg):
    layer = layer_from_config(compose_cfg, "brn", 2, "norm.layer.warmup_steps=10", "norm.layer.momentum=0.0")
    # running stats stay (0, 1) and the batch has σ_B ≫ 1 and μ_B ≫ 0, so r = r_max(t) and d = d_max(t)
    x = torch.randn(8, 2, 3, 3) * 10 + 100
    x_hat = normalize(x, (0, 2, 3))
    for step in range(13):
        progress = min(step / 10, 1.0)
        r_max, d_max = 1 + 2.0 * progress, 5.0 * progress
        close(layer(x), x_hat * r_max + d_max, tol=1e-4)
        assert int(layer.num_batches_tracked) == step + 1
    assert layer.record_state() == {"steps": 13, "r_max": 3.0, "d_max": 5.0}


def assert_acts_as_batch_norm(layer: nn.Module, x: torch.Tensor, check_eval: bool) -> None:
    """``layer`` (4 channels, random γ, β) normalizes ``x`` per channel over (N, H, W) in training, updates
    its running statistics as nn.BatchNorm2d does, and (``check_eval``) uses them as BN does in eval."""
    gamma, beta = randomize_affine(layer)
    reference = nn.BatchNorm2d(4)
    reference.load_state_dict(layer.state_dict())
    close(layer(x), normalize(x, (0, 2, 3)) * gamma + beta)
    reference(x)
    close(layer.running_mean, reference.running_mean)
    close(layer.running_var, reference.running_var)
    if check_eval:
        layer.eval(), reference.eval()
        close(layer(x), reference(x))


# --------------------------------------------------------------------------------------------------
# ghost batch norm


def test_ghost_batch_norm_with_virtual_batch_equal_to_the_batch_is_batch_norm(compose_cfg):
    layer = layer_from_config(compose_cfg, "ghost", 4, "norm.layer.virtual_batch=8")
    assert isinstance(layer, GhostBatchNorm2d)
    assert_acts_as_batch_norm(layer, torch.randn(8, 4, 3, 3) * 2 + 1, check_eval=False)


def test_ghost_batch_norm_normalizes_each_virtual_batch_as_its_own_batch(compose_cfg):
    layer = layer_from_config(compose_cfg, "ghost", 4, "norm.layer.virtual_batch=2")
    gamma, beta = randomize_affine(layer)
    reference = nn.BatchNorm2d(4)
    reference.load_state_dict(layer.state_dict())
    x = torch.randn(4, 4, 3, 3) * 2 + 1
    x[2:] = x[2:] * 5 - 3  # the two halves have different statistics
    halves = torch.cat([normalize(x[:2], (0, 2, 3)), normalize(x[2:], (0, 2, 3))]) * gamma + beta
    close(layer(x), halves)
    assert not torch.allclose(halves, normalize(x, (0, 2, 3)) * gamma + beta, atol=1e-2)
    close(torch.cat([reference(x[:2]), reference(x[2:])]), halves)  # BN on each half, in turn
    close(layer.running_mean, reference.running_mean)
    close(layer.running_var, reference.running_var)
    layer.eval(), reference.eval()
    close(layer(x), reference(x))


def test_ghost_batch_norm_default_virtual_batch_is_4(compose_cfg):
    layer = layer_from_config(compose_cfg, "ghost", 2)
    x = torch.randn(16, 2, 2, 2)
    expected = torch.cat([normalize(chunk, (0, 2, 3)) for chunk in x.split(4)])
    close(layer(x), expected)


# --------------------------------------------------------------------------------------------------
# sync batch norm, weight standardization + GN, filter response normalization


def test_sync_batch_norm_on_one_process_is_batch_norm(compose_cfg):
    assert not (torch.distributed.is_available() and torch.distributed.is_initialized())
    layer = layer_from_config(compose_cfg, "syncbn", 4)
    assert isinstance(layer, SyncBatchNorm2d)
    assert_acts_as_batch_norm(layer, torch.randn(6, 4, 3, 3) * 2 + 1, check_eval=True)


def test_weight_standardization_gives_every_conv_filter_zero_mean_and_unit_variance(compose_cfg):
    norm, net = small_cnn(compose_cfg, "ws_gn")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4
    for conv in convs:
        filters = conv.weight.reshape(conv.weight.shape[0], -1)  # (out, in·kh·kw)
        close(filters.mean(dim=1), torch.zeros(filters.shape[0]))
        close(filters.var(dim=1, unbiased=False), torch.ones(filters.shape[0]), tol=2e-3)  # var/(var+ε)
        raw = conv.parametrizations.weight.original.reshape(filters.shape)
        centred = raw - raw.mean(dim=1, keepdim=True)
        close(filters, centred / torch.sqrt(centred.pow(2).mean(dim=1, keepdim=True) + 1e-5))
    assert type(net.classifier) is nn.Linear  # the classifier is not standardized
    assert isinstance(norm(16), nn.GroupNorm) and norm(16).num_groups == 8  # followed by GN, as gn.yaml


def test_filter_response_norm_matches_its_formula(compose_cfg):
    norm = norm_from_config(compose_cfg, "frn")
    layer = norm(5, activation=True)  # followed by an activation: FRN + TLU replaces it
    assert isinstance(layer, FilterResponseNorm2d) and layer.replaces_activation and norm.replaces_activation
    assert isinstance(norm.activation(), nn.Identity)
    gamma, beta = randomize_affine(layer)
    with torch.no_grad():
        layer.tau.uniform_(-0.5, 0.5)
    tau = per_channel(layer.tau.detach())
    x = torch.randn(3, 5, 4, 4) * 2 + 0.5
    nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
    expected = torch.maximum(gamma * x / torch.sqrt(nu2 + 1e-6) + beta, tau)
    close(layer(x), expected)
    assert (layer(x) >= tau - 1e-7).all()
    layer.eval()
    close(layer(x), expected)


def test_filter_response_norm_without_an_activation_after_it_has_no_tlu(compose_cfg):
    norm = norm_from_config(compose_cfg, "frn")
    layer = norm(5)  # not followed by an activation (e.g. before a residual addition): plain FRN
    assert layer.tau is None and "tau" not in dict(layer.named_parameters())
    assert layer.describe() == "FilterResponseNorm2d(channels=5, tlu=false)"
    gamma, beta = randomize_affine(layer)
    x = torch.randn(3, 5, 4, 4) * 2 + 0.5
    nu2 = x.pow(2).mean(dim=(2, 3), keepdim=True)
    close(layer(x), gamma * x / torch.sqrt(nu2 + 1e-6) + beta)
    assert (layer(x) < 0).any()  # no threshold: negative responses pass


def test_only_a_norm_that_brings_its_activation_replaces_the_relu(compose_cfg):
    for name in NORMS:
        norm = norm_from_config(compose_cfg, name)
        expected = nn.Identity if name == "frn" else nn.ReLU
        assert type(norm.activation()) is expected, name
        assert norm.replaces_activation is (name == "frn")


# --------------------------------------------------------------------------------------------------
# gradients, train vs eval, records


def gradcheck_module(module: nn.Module, x: torch.Tensor) -> None:
    """float64 gradcheck of the output with respect to the input and every parameter."""
    module = module.double()
    names = [name for name, _ in module.named_parameters()]
    params = [p.detach().clone().requires_grad_(True) for _, p in module.named_parameters()]

    def forward(inputs: torch.Tensor, *values: torch.Tensor) -> torch.Tensor:
        return functional_call(module, dict(zip(names, values, strict=True)), (inputs,))

    assert torch.autograd.gradcheck(forward, (x.double().requires_grad_(True), *params))


def _mixed_switchable() -> SwitchableNorm2d:
    layer = SwitchableNorm2d(3)
    set_mixture(layer, [0.2, -0.3, 0.5], [-0.4, 0.1, 0.6])
    return layer


def _clipped_renorm() -> BatchRenorm2d:
    layer = BatchRenorm2d(3, momentum=0.0)
    with torch.no_grad():  # on randn inputs σ_B/σ ≈ 0.1 → r = 1/r_max and (μ_B − μ)/σ ≈ −6 → d = −d_max
        layer.running_var.fill_(100.0)
        layer.running_mean.fill_(60.0)
    return layer


def _random_frn() -> FilterResponseNorm2d:
    layer = FilterResponseNorm2d(3)
    with torch.no_grad():
        layer.tau.uniform_(-0.3, 0.3)
        layer.bias.uniform_(-0.3, 0.3)
    return layer


GRADCHECK_LAYERS: dict[str, Callable[[], nn.Module]] = {
    "pixel": lambda: PixelNorm(3),
    "switchable-train": _mixed_switchable,
    "switchable-eval": lambda: _mixed_switchable().eval(),
    "brn-as-bn": lambda: BatchRenorm2d(3, r_max=1.0, d_max=0.0, momentum=0.0),
    "brn-clipped": _clipped_renorm,
    "ghost": lambda: GhostBatchNorm2d(3, virtual_batch=2),
    "ghost-eval": lambda: GhostBatchNorm2d(3, virtual_batch=2).eval(),
    "mean-only-bn": lambda: MeanOnlyBatchNorm2d(3),
    "mean-only-bn-eval": lambda: MeanOnlyBatchNorm2d(3).eval(),
    "frn": _random_frn,
    "frn-without-tlu": lambda: FilterResponseNorm2d(3, activation=False),
}


@pytest.mark.parametrize("name", list(GRADCHECK_LAYERS))
def test_gradcheck_layers(name):
    gradcheck_module(GRADCHECK_LAYERS[name](), torch.randn(4, 3, 3, 3))


def test_gradcheck_weight_standardization():
    ws = WeightStandardization(eps=1e-5)
    assert torch.autograd.gradcheck(ws, (torch.randn(4, 3, 2, 2, dtype=torch.float64, requires_grad=True),))


@pytest.mark.parametrize("name", NORMS)
def test_train_vs_eval(compose_cfg, name):
    """Batch-dependent norms: running statistics in eval (a sample's output ignores the rest of the batch),
    batch statistics in training. The others: identical outputs in train and eval, per sample."""
    norm, net = small_cnn(compose_cfg, name)
    x = torch.randn(8, 1, 8, 8)
    net.train()
    with torch.no_grad():  # move the running statistics away from x's; converge spectral norm's power iteration
        for _ in range(50 if name == "spectral" else 3):
            net(torch.randn(8, 1, 8, 8) * 2 + 1)
    train_out = net(x)
    net.eval()
    eval_out = net(x)
    close(eval_out[:1], net(x[:1]))
    close(eval_out[5:6], net(torch.cat([x[5:6], torch.randn(3, 1, 8, 8)]))[:1])
    if norm.batch_dependent:
        assert not torch.allclose(train_out, eval_out, atol=1e-4)
        net.train()
        assert not torch.allclose(net(x)[:2], net(x[:2]), atol=1e-4)
    else:
        close(eval_out, train_out)
        net.train()
        close(net(x)[:2], net(x[:2]))


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("wn", {"_WeightNorm(Conv2d)": 4, "_WeightNorm(Linear)": 1}),
        ("spectral", {"_SpectralNorm(Conv2d)": 4, "_SpectralNorm(Linear)": 1}),
        (
            "ghost",
            {"GhostBatchNorm2d(channels=8, virtual_batch=4)": 2, "GhostBatchNorm2d(channels=16, virtual_batch=4)": 2},
        ),
        (
            "ws_gn",
            {
                "WeightStandardization(Conv2d)": 4,
                "GroupNorm(groups=4, channels=8)": 2,
                "GroupNorm(groups=8, channels=16)": 2,
            },
        ),
        ("syncbn", {"SyncBatchNorm2d(channels=8)": 2, "SyncBatchNorm2d(channels=16)": 2}),
        ("frn", {"FilterResponseNorm2d(channels=8)": 2, "FilterResponseNorm2d(channels=16)": 2}),
    ],
)
def test_norm_layers_describe_the_new_norms(compose_cfg, name, expected):
    _, net = small_cnn(compose_cfg, name)
    assert describe_norm_layers(net) == expected


def test_every_norm_config_names_itself_and_the_old_api_still_works(compose_cfg):
    for name in NORMS:  # the config group is the registry: conf/norm/<name>.yaml builds norm <name>
        norm = norm_from_config(compose_cfg, name)
        assert norm.name == name and norm.info()["name"] == name and norm.info()["label"]
    plain = Normalization("bn", layer=nn.BatchNorm2d, batch_dependent=True)  # a plain class, no partial
    plain.validate(batch=8)
    assert isinstance(plain(4), nn.BatchNorm2d)
    assert isinstance(Normalization("none")(4), nn.Identity)
    assert isinstance(plain.apply_weight(nn.Linear(2, 2)), nn.Linear)


# --------------------------------------------------------------------------------------------------
# invalid parameters fail at configuration time, with the key, the value and what is allowed

INVALID = [
    (["norm=gn", "norm.layer.groups=0"], r"norm\.layer\.groups=0 is invalid: it must be an integer >= 1"),
    (["norm=ws_gn", "norm.layer.groups=-4"], r"norm\.layer\.groups=-4 is invalid: it must be an integer >= 1"),
    (["norm=ghost", "norm.layer.virtual_batch=3"], r"norm\.layer\.virtual_batch=3 is invalid: it must divide batch=32"),
    (
        ["norm=ghost", "norm.layer.virtual_batch=0"],
        r"norm\.layer\.virtual_batch=0 is invalid: it must be an integer >= 1",
    ),
    (["norm=ghost", "batch=2"], r"norm\.layer\.virtual_batch=4 is invalid: it must divide batch=2"),
    (["norm=brn", "norm.layer.r_max=0.5"], r"norm\.layer\.r_max=0\.5 is invalid: it must be a number >= 1"),
    (["norm=brn", "norm.layer.d_max=-1.0"], r"norm\.layer\.d_max=-1\.0 is invalid: it must be a number >= 0"),
    (
        ["norm=brn", "norm.layer.warmup_steps=-5"],
        r"norm\.layer\.warmup_steps=-5 is invalid: it must be an integer >= 0",
    ),
    (["norm=bn", "norm.layer.eps=-1.0e-5"], r"norm\.layer\.eps=-1e-05 is invalid: it must be a number >= 0"),
    (["norm=frn", "norm.layer.eps=-0.1"], r"norm\.layer\.eps=-0\.1 is invalid"),
    (["norm=pixel", "norm.layer.eps=-1.0"], r"norm\.layer\.eps=-1\.0 is invalid"),
    (
        ["norm=switchable", "norm.layer.momentum=1.5"],
        r"norm\.layer\.momentum=1\.5 is invalid: it must be a number in \[0, 1\]",
    ),
    (
        ["norm=spectral", "norm.weight.n_power_iterations=0"],
        r"norm\.weight\.n_power_iterations=0 is invalid: it must be an integer >= 1",
    ),
    (["norm=spectral", "norm.weight.eps=-1.0"], r"norm\.weight\.eps=-1\.0 is invalid: it must be a number >= 0"),
    (["norm=ws_gn", "norm.weight.eps=-1.0"], r"norm\.weight\.eps=-1\.0 is invalid"),
]


@pytest.mark.parametrize(("overrides", "message"), INVALID, ids=[" ".join(o) for o, _ in INVALID])
def test_invalid_parameters_fail_at_configuration_time(compose_cfg, overrides, message):
    cfg = compose_cfg(*overrides)
    norm = instantiate(cfg.norm)  # building the config object does not fail ...
    with pytest.raises(ValueError, match=message) as error:
        norm.validate(batch=cfg.batch)  # ... validating it (before any model is built) does
    assert "\n" not in str(error.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["norm=gn", "norm.layer.groups=0"], r"norm\.layer\.groups=0 is invalid"),
        (["norm=ghost", "norm.layer.virtual_batch=0"], r"norm\.layer\.virtual_batch=0 is invalid"),
        (["norm=brn", "norm.layer.r_max=0.5"], r"norm\.layer\.r_max=0\.5 is invalid"),
        (["norm=frn", "norm.layer.eps=-0.1"], r"norm\.layer\.eps=-0\.1 is invalid"),
        (["norm=switchable", "norm.layer.momentum=1.5"], r"norm\.layer\.momentum=1\.5 is invalid"),
        (["norm=spectral", "norm.weight.n_power_iterations=0"], r"norm\.weight\.n_power_iterations=0 is invalid"),
    ],
)
def test_layers_and_weight_functions_check_their_arguments_too(compose_cfg, overrides, message):
    norm = instantiate(compose_cfg(*overrides).norm)
    with pytest.raises(ValueError, match=message):
        norm.apply_weight(nn.Conv2d(2, 16, 3)) if norm.weight is not None else norm(16)


@pytest.mark.parametrize("name", NORMS)
@pytest.mark.parametrize("batch", [2, 16, 32])
def test_default_configs_validate(compose_cfg, name, batch):
    norm = instantiate(compose_cfg(f"norm={name}", f"batch={batch}").norm)
    if name == "ghost" and batch == 2:  # the default virtual_batch=4 cannot split a batch of 2
        with pytest.raises(ValueError, match=r"norm\.layer\.virtual_batch=4 is invalid: it must divide batch=2"):
            norm.validate(batch=batch)
        return
    norm.validate(batch=batch)


def test_a_builder_declares_its_own_rules():
    calls = []

    def width_rule(key: str, value: object, batch: int | None) -> None:
        calls.append((key, value, batch))
        if batch % value:  # type: ignore[operator]
            raise ValueError(f"{key}={value} is invalid: it must divide batch={batch}")

    @config_rules(width=width_rule)
    def build(num_channels: int, width: int = 3) -> nn.Module:
        return nn.Identity()

    assert rules_for(build) == {"width": width_rule}
    norm = Normalization("custom", layer=functools.partial(build, width=4))
    norm.validate(batch=8)
    assert calls == [("norm.layer.width", 4, 8)]
    with pytest.raises(ValueError, match=r"^norm\.layer\.width=4 is invalid: it must divide batch=6$"):
        norm.validate(batch=6)


def test_a_foreign_layer_with_an_argument_named_groups_is_not_checked_with_gns_rule():
    def grouped_layer(num_channels: int, groups: int = 1) -> nn.Module:  # not normlab's: no rules
        return nn.Identity()

    Normalization("foreign", layer=functools.partial(grouped_layer, groups=0)).validate(batch=8)
    # nor by torch's GroupNorm rules, which are keyed by the class and name its own keyword num_groups
    Normalization("torch_gn", layer=functools.partial(nn.GroupNorm, 4)).validate(batch=8)
    with pytest.raises(ValueError, match=r"^norm\.layer\.num_groups=0 is invalid: it must be an integer >= 1$"):
        Normalization("torch_gn", layer=functools.partial(nn.GroupNorm, num_groups=0)).validate(batch=8)
    # normlab's group_norm declares the rule for its own `groups`
    with pytest.raises(ValueError, match=r"^norm\.layer\.groups=0 is invalid: it must be an integer >= 1$"):
        Normalization("gn", layer=functools.partial(group_norm, groups=0)).validate(batch=8)


class _Subclassed(GhostBatchNorm2d):
    """Inherits ghost BN's rules: the same arguments."""


# one case per rule family: (target, keyword, a valid value, an invalid value, the message's tail)
RULE_FAMILIES = [
    ("eps", FilterResponseNorm2d, "eps", 0.0, -1.0, "it must be a number >= 0"),
    ("eps-weight", spectral_norm, "eps", 1e-12, -1.0, "it must be a number >= 0"),
    ("int", group_norm, "min_group_size", 1, 0, "it must be an integer >= 1"),
    ("int-not-bool", group_norm, "groups", 2, True, "it must be an integer >= 1"),
    ("int-from-0", BatchRenorm2d, "warmup_steps", 0, -1, "it must be an integer >= 0"),
    ("number", BatchRenorm2d, "r_max", 1.0, 0.9, "it must be a number >= 1"),
    ("momentum", SwitchableNorm2d, "momentum", 1.0, 1.5, r"it must be a number in \[0, 1\]"),
    ("momentum-none-is-invalid", MeanOnlyBatchNorm2d, "momentum", 0.0, None, r"it must be a number in \[0, 1\]"),
    ("foreign-bn-momentum", nn.BatchNorm2d, "momentum", None, -0.1, r"it must be a number in \[0, 1\]"),
    ("foreign-bn-eps", nn.BatchNorm2d, "eps", 1e-5, -1.0, "it must be a number >= 0"),
    ("virtual-batch", GhostBatchNorm2d, "virtual_batch", 4, 3, "it must divide batch=8"),
    ("inherited", _Subclassed, "virtual_batch", 8, 0, "it must be an integer >= 1"),
]


@pytest.mark.parametrize(
    ("target", "key", "valid", "bad", "message"), [c[1:] for c in RULE_FAMILIES], ids=[c[0] for c in RULE_FAMILIES]
)
def test_each_rule_family(target, key, valid, bad, message):
    rules = rules_for(target)
    assert key in rules
    check_arguments("norm.layer", target, {key: valid}, 8)
    with pytest.raises(ValueError, match=rf"^norm\.layer\.{key}={re.escape(str(bad))} is invalid: {message}"):
        check_arguments("norm.layer", target, {key: bad}, 8)


def test_rules_are_keyed_by_target_not_keyword():
    assert rules_for(nn.BatchNorm2d) is FOREIGN_RULES[nn.BatchNorm2d]
    assert rules_for(nn.Conv2d) == {}  # torch's conv has `groups` too, and no rules here
    assert "groups" not in rules_for(nn.BatchNorm2d)
    assert rules_for(weight_norm) == {}  # declared, with nothing to check
    assert not hasattr(checks, "KEYWORD_RULES")


@pytest.mark.parametrize("name", NORMS)
def test_every_norm_builds_a_resnet_that_backpropagates(compose_cfg, name):
    cfg = compose_cfg(
        f"norm={name}", "model=resnet20", "model.depth=8", "model.shortcut=conv", "model.zero_init_last=true"
    )
    norm = instantiate(cfg.norm)
    net = norm.apply_weight(instantiate(cfg.model, input_shape=(3, 8, 8), num_classes=5, norm=norm))
    out = net(torch.randn(4, 3, 8, 8))
    assert out.shape == (4, 5) and torch.isfinite(out).all()
    out.square().mean().backward()
    for param_name, param in net.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name


@pytest.mark.parametrize("name", NORMS)
def test_info_shift_agrees_with_the_layer_the_norm_builds(compose_cfg, name):
    """``info.shift`` in conf/norm/<name>.yaml is what the built layer does: a learned β, or none."""
    cfg = compose_cfg(f"norm={name}")
    norm = instantiate(cfg.norm)
    layer = norm(16, activation=True)
    has_bias = isinstance(getattr(layer, "bias", None), nn.Parameter)
    assert norm.adds_shift(16) is has_bias is bool(cfg.norm.info.shift)
    if has_bias:  # and it is a shift: a constant added to the bias moves every output by it (before any TLU)
        layer = norm(16).eval()  # eval: running statistics stay put between the two calls
        x = torch.randn(4, 16, 3, 3)
        before = layer(x)
        with torch.no_grad():
            layer.bias.add_(0.25)
        close(layer(x), before + 0.25)


def test_a_norm_without_affine_adds_no_shift():
    assert not Normalization("gn", layer=functools.partial(group_norm, groups=4, affine=False)).adds_shift(8)
    assert not Normalization("bn", layer=functools.partial(nn.BatchNorm2d, affine=False)).adds_shift(8)
    assert not Normalization("pixel", layer=PixelNorm).adds_shift(8)
    assert not Normalization("none").adds_shift(8)
    assert Normalization("bn", layer=nn.BatchNorm2d).adds_shift(8)


def test_probing_for_a_shift_leaves_the_random_stream_alone():
    def noisy(num_channels: int) -> nn.Module:  # a layer that does draw at construction
        layer = nn.BatchNorm2d(num_channels)
        nn.init.normal_(layer.bias)
        return layer

    torch.manual_seed(1)
    Normalization("noisy", layer=noisy).adds_shift(8)
    after_probe = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(torch.rand(3), after_probe)
