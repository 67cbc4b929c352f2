"""Models build for every norm, depth, channel count and input size, and know nothing of datasets."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from torch import nn

from src.models import CifarResNet, SmallCNN
from src.norms import Normalization, layer_norm

from .conftest import config_options

BN = Normalization("bn", layer=nn.BatchNorm2d, batch_dependent=True)


@pytest.mark.parametrize("model", config_options("model"))
@pytest.mark.parametrize(("shape", "classes"), [((1, 8, 8), 10), ((1, 28, 28), 10), ((3, 32, 32), 100)])
def test_every_model_config_builds_and_runs(compose_cfg, model, shape, classes):
    cfg = compose_cfg(f"model={model}", "norm=gn")
    net = instantiate(cfg.model, input_shape=shape, num_classes=classes, norm=instantiate(cfg.norm))
    out = net(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize(("depth", "convs"), [(20, 19), (32, 31), (56, 55)])
def test_resnet_depth_counts_weighted_layers(depth, convs):
    net = CifarResNet((3, 32, 32), 10, BN, depth=depth)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == convs
    assert sum(isinstance(m, nn.Linear) for m in net.modules()) == 1
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == convs


def test_resnet20_has_the_paper_parameter_count():
    # He et al. 2016, Table 6: ResNet-20 has 0.27M parameters.
    net = CifarResNet((3, 32, 32), 10, BN, depth=20)
    assert 0.26e6 < sum(p.numel() for p in net.parameters()) < 0.28e6


def test_zero_init_last_makes_every_block_start_as_identity_branch():
    net = CifarResNet((3, 32, 32), 10, BN, depth=20, zero_init_last=True)
    for block in net.blocks:
        assert torch.all(block.norm2.weight == 0)
        assert torch.all(block.norm1.weight == 1)
    net.eval()
    x = torch.randn(2, 16, 32, 32).relu()
    assert torch.allclose(net.blocks[0](x), x)


def test_conv_shortcut_and_invalid_options():
    ln = Normalization("ln", layer=layer_norm)
    assert CifarResNet((1, 28, 28), 10, ln, depth=8, shortcut="conv")(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    with pytest.raises(ValueError, match=r"model\.depth=21"):
        CifarResNet((3, 32, 32), 10, ln, depth=21)
    with pytest.raises(ValueError, match=r"model\.shortcut='x'"):
        CifarResNet((3, 32, 32), 10, ln, shortcut="x")


def test_models_call_only_the_norm_factory():
    calls: list[int] = []

    def counting_layer(channels: int) -> nn.Module:
        calls.append(channels)
        return nn.Identity()

    SmallCNN((1, 28, 28), 10, Normalization("probe", layer=counting_layer), widths=(8, 16))
    assert calls == [8, 8, 16, 16]
