"""The foundation norms against their definitions, written out independently here."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from src.norms import Normalization, describe_norm_layers, resolve_groups

torch.manual_seed(0)


def normalize(x: torch.Tensor, dims: tuple[int, ...], eps: float = 1e-5) -> torch.Tensor:
    mean = x.mean(dim=dims, keepdim=True)
    var = x.var(dim=dims, unbiased=False, keepdim=True)
    return (x - mean) / torch.sqrt(var + eps)


def make(compose_cfg, name: str, channels: int) -> nn.Module:
    norm = instantiate(compose_cfg(f"norm={name}").norm)
    assert isinstance(norm, Normalization) and norm.name == name
    return norm(channels)


def randomize_affine(layer: nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.no_grad():
        layer.weight.uniform_(0.5, 1.5)
        layer.bias.uniform_(-0.5, 0.5)
    return layer.weight.view(1, -1, 1, 1), layer.bias.view(1, -1, 1, 1)


def test_ln_normalizes_each_sample_over_c_h_w(compose_cfg):
    x = torch.randn(4, 8, 5, 5) * 3 + 1
    layer = make(compose_cfg, "ln", 8)
    gamma, beta = randomize_affine(layer)
    expected = normalize(x, (1, 2, 3)) * gamma + beta
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_in_normalizes_each_sample_and_channel_over_h_w(compose_cfg):
    x = torch.randn(4, 8, 5, 5) * 2 - 1
    layer = make(compose_cfg, "in", 8)
    gamma, beta = randomize_affine(layer)
    expected = normalize(x, (2, 3)) * gamma + beta
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)
    layer.eval()
    torch.testing.assert_close(layer(x), expected, atol=1e-5, rtol=1e-5)


def test_gn_normalizes_channel_groups(compose_cfg):
    x = torch.randn(3, 64, 4, 4)
    layer = make(compose_cfg, "gn", 64)
    assert layer.num_groups == 32
    gamma, beta = randomize_affine(layer)
    grouped = normalize(x.view(3, 32, 2, 4, 4), (2, 3, 4)).view(3, 64, 4, 4)
    torch.testing.assert_close(layer(x), grouped * gamma + beta, atol=1e-5, rtol=1e-5)


def test_gn_with_one_group_is_ln_and_with_c_groups_is_in():
    x = torch.randn(2, 6, 3, 3)
    torch.testing.assert_close(nn.GroupNorm(1, 6, affine=False)(x), normalize(x, (1, 2, 3)), atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(nn.GroupNorm(6, 6, affine=False)(x), normalize(x, (2, 3)), atol=1e-5, rtol=1e-5)


def test_bn_uses_batch_statistics_in_train_and_running_ones_in_eval(compose_cfg):
    x = torch.randn(8, 4, 3, 3) * 2 + 3
    layer = make(compose_cfg, "bn", 4)
    gamma, beta = randomize_affine(layer)
    layer.train()
    torch.testing.assert_close(layer(x), normalize(x, (0, 2, 3)) * gamma + beta, atol=1e-5, rtol=1e-5)
    # after one step, running stats moved 10 % (momentum 0.1) from (0, 1) toward the batch's
    mean = x.mean(dim=(0, 2, 3))
    var = x.var(dim=(0, 2, 3), unbiased=True)
    torch.testing.assert_close(layer.running_mean, 0.1 * mean, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(layer.running_var, 0.9 + 0.1 * var, atol=1e-5, rtol=1e-5)
    layer.eval()
    running = (x - layer.running_mean.view(1, -1, 1, 1)) / torch.sqrt(layer.running_var.view(1, -1, 1, 1) + 1e-5)
    torch.testing.assert_close(layer(x), running * gamma + beta, atol=1e-5, rtol=1e-5)
    # in eval a sample's output does not depend on the rest of the batch
    torch.testing.assert_close(layer(x[:1]), layer(x)[:1])


def test_none_is_identity(compose_cfg):
    x = torch.randn(2, 3, 4, 4)
    layer = make(compose_cfg, "none", 3)
    assert isinstance(layer, nn.Identity)
    assert torch.equal(layer(x), x)


@pytest.mark.parametrize("name", ["bn", "gn", "ln", "in"])
def test_zero_init_sets_scale_to_zero(compose_cfg, name):
    norm = instantiate(compose_cfg(f"norm={name}").norm)
    assert torch.all(norm(16, zero_init=True).weight == 0)
    assert torch.all(norm(16).weight == 1)


@pytest.mark.parametrize(
    ("channels", "groups", "min_group_size", "expected"),
    [(64, 32, 2, 32), (32, 32, 2, 16), (16, 32, 2, 8), (16, 32, 1, 16), (8, 4, 4, 2), (3, 32, 2, 1)],
)
def test_resolve_groups_rule(channels, groups, min_group_size, expected):
    assert resolve_groups(channels, groups, min_group_size) == expected


def test_groups_that_cannot_divide_channels_fail_with_the_key():
    with pytest.raises(ValueError, match=r"norm\.layer\.groups=4 .* 10 channels"):
        resolve_groups(10, 4, 1)
    with pytest.raises(ValueError, match=r"norm\.layer\.groups=0"):
        resolve_groups(16, 0, 1)


def test_resolved_groups_are_logged_and_described(compose_cfg, caplog):
    norm = instantiate(compose_cfg("norm=gn", "norm.layer.min_group_size=4").norm)
    with caplog.at_level("INFO"):
        model = nn.Sequential(norm(16), norm(64), norm(16))
    requested = "(norm.layer: groups=32, min_group_size=4, eps=1e-05)"
    assert caplog.text.count(f"norm gn: 16 channels -> GroupNorm(groups=4, channels=16) {requested}") == 1
    assert caplog.text.count(f"norm gn: 64 channels -> GroupNorm(groups=16, channels=64) {requested}") == 1
    assert describe_norm_layers(model) == {
        "GroupNorm(groups=4, channels=16)": 2,
        "GroupNorm(groups=16, channels=64)": 1,
    }


def test_each_run_logs_its_own_resolved_groups(compose_cfg, caplog):
    """Two runs in one process (two Normalization instances) both log: nothing is remembered process-wide."""
    cfg = compose_cfg("norm=gn")
    for _ in range(2):
        norm = instantiate(cfg.norm)
        caplog.clear()
        with caplog.at_level("INFO"):
            norm(16)
        assert "norm gn: 16 channels -> GroupNorm(groups=8, channels=16)" in caplog.text
