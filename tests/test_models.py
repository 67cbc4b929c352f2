"""Models build for every norm, depth, channel count and input size, and know nothing of datasets."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from hydra.utils import instantiate
from torch import nn

from src.models import CifarResNet, SmallCNN
from src.norms import FilterResponseNorm2d, Normalization, layer_norm

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


class Marker(nn.Identity):
    """A layer only the factory under test builds."""


def test_models_call_only_the_norm_factory():
    calls: list[int] = []

    def counting_layer(channels: int) -> nn.Module:
        calls.append(channels)
        return Marker()

    net = SmallCNN((1, 28, 28), 10, Normalization("probe", layer=counting_layer), widths=(8, 16))
    # one probe per channel count (Normalization.adds_shift, cached) and one layer per conv
    assert calls == [8, 8, 8, 16, 16, 16]
    assert sum(isinstance(m, Marker) for m in net.modules()) == 4


# --------------------------------------------------------------------------------------------------
# a conv has a bias exactly when the norm after it adds no learned shift


def build(compose_cfg, name: str, model: str = "resnet8", *overrides: str) -> nn.Module:
    cfg = compose_cfg(f"norm={name}", f"model={model}", *overrides)
    norm = instantiate(cfg.norm)
    return norm.apply_weight(instantiate(cfg.model, input_shape=(3, 8, 8), num_classes=5, norm=norm))


@pytest.mark.parametrize("name", ["none", "wn", "pixel", "spectral", "bn", "gn"])
@pytest.mark.parametrize("model", ["resnet8", "small_cnn"])
def test_convs_have_a_bias_exactly_when_the_norm_adds_no_shift(compose_cfg, name, model):
    net = build(compose_cfg, name, model, *(["model.shortcut=conv"] if model == "resnet8" else []))
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == (9 if model == "resnet8" else 6)  # resnet8 with conv shortcuts: 7 + 2 projections
    wants_bias = name in ("none", "wn", "pixel", "spectral")
    for conv in convs:
        assert (conv.bias is not None) is wants_bias
        if wants_bias:
            assert isinstance(conv.bias, nn.Parameter) and torch.all(conv.bias == 0)  # zero-initialised
    out = net(torch.randn(2, 3, 8, 8))
    out.sum().backward()
    assert all(conv.bias.grad is not None for conv in convs if conv.bias is not None)


# The state_dict of a BN ResNet-8 (pad shortcuts), as on the main branch before conv biases and act1.
BN_KEYS = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
BN_RESNET8_KEYS = [
    "stem.0.weight",
    *(f"stem.1.{k}" for k in BN_KEYS),
    *(
        key
        for block in range(3)
        for key in (
            f"blocks.{block}.conv1.weight",
            *(f"blocks.{block}.norm1.{k}" for k in BN_KEYS),
            f"blocks.{block}.conv2.weight",
            *(f"blocks.{block}.norm2.{k}" for k in BN_KEYS),
        )
    ),
    "classifier.weight",
    "classifier.bias",
]


def test_a_bn_resnets_state_dict_keys_are_unchanged(compose_cfg):
    net = build(compose_cfg, "bn")
    assert list(net.state_dict()) == BN_RESNET8_KEYS
    assert [name for name, _ in net.named_parameters()] == [
        k for k in BN_RESNET8_KEYS if "running" not in k and "tracked" not in k
    ]


# --------------------------------------------------------------------------------------------------
# the main branch's ResNet, verbatim but for names: shift norms must build and compute exactly it


class MainBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride, norm, zero_init_last, shortcut):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.norm1 = norm(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, stride=1, padding=1, bias=False)
        self.norm2 = norm(out_channels, zero_init=zero_init_last)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            if shortcut == "pad":
                extra = out_channels - in_channels
                self.shortcut = _Pad(extra)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False), norm(out_channels)
                )

    def forward(self, x):
        out = F.relu(self.norm1(self.conv1(x)))
        out = self.norm2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class _Pad(nn.Module):
    def __init__(self, extra):
        super().__init__()
        self.extra = extra

    def forward(self, x):
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra))


class MainResNet(nn.Module):
    def __init__(self, channels, num_classes, norm, depth, widths=(16, 32, 64), zero_init_last=False, shortcut="pad"):
        super().__init__()
        n = (depth - 2) // 6
        self.stem = nn.Sequential(
            nn.Conv2d(channels, widths[0], 3, padding=1, bias=False), norm(widths[0]), nn.ReLU(inplace=True)
        )
        blocks, in_channels = [], widths[0]
        for stage, width in enumerate(widths):
            for index in range(n):
                blocks.append(
                    MainBlock(in_channels, width, 2 if stage and not index else 1, norm, zero_init_last, shortcut)
                )
                in_channels = width
        self.blocks = nn.Sequential(*blocks)
        self.classifier = nn.Linear(in_channels, num_classes)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.classifier(x.mean(dim=(2, 3)))


@pytest.mark.parametrize("name", ["bn", "gn", "ln", "in", "ws_gn", "brn", "ghost", "switchable", "wn_mbn", "syncbn"])
@pytest.mark.parametrize("shortcut", ["pad", "conv"])
def test_shift_norms_build_and_compute_exactly_the_main_branch_resnet(compose_cfg, name, shortcut):
    cfg = compose_cfg(f"norm={name}")
    torch.manual_seed(3)
    main = instantiate(cfg.norm).apply_weight(
        MainResNet(3, 5, instantiate(cfg.norm), 8, zero_init_last=True, shortcut=shortcut)
    )
    torch.manual_seed(3)
    norm = instantiate(cfg.norm)
    new = norm.apply_weight(CifarResNet((3, 8, 8), 5, norm, depth=8, zero_init_last=True, shortcut=shortcut))
    # same modules under the same names (plus the parameter-free act1), same parameters in the same order
    renamed = {"MainResNet": "CifarResNet", "MainBlock": "BasicBlock", "_Pad": "PadShortcut"}
    main_modules = [(k, renamed.get(type(m).__name__, type(m).__name__)) for k, m in main.named_modules()]
    assert [(k, type(m).__name__) for k, m in new.named_modules() if not k.endswith("act1")] == main_modules
    assert all(type(m) is nn.ReLU for k, m in new.named_modules() if k.endswith("act1"))
    assert [k for k, _ in new.named_parameters()] == [k for k, _ in main.named_parameters()]
    for (key, a), b in zip(main.state_dict().items(), new.state_dict().values(), strict=True):
        assert torch.equal(a, b), key  # the same initialisation, bit for bit
    with torch.no_grad():  # a trained-looking state, loaded into both
        for p in main.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    new.load_state_dict(main.state_dict())
    x = torch.randn(8, 3, 8, 8)
    for mode in (True, False):
        main.train(mode), new.train(mode)
        assert torch.equal(new(x), main(x))


# --------------------------------------------------------------------------------------------------
# FRN brings its own activation: FRN + TLU where the model had norm → ReLU, FRN alone before the addition


def test_an_frn_resnet_has_no_relu_after_an_frn_with_tlu(compose_cfg):
    net = build(compose_cfg, "frn", "resnet8", "model.shortcut=conv")
    assert net.stem[1].activation and isinstance(net.stem[2], nn.Identity)
    for block in net.blocks:
        assert block.norm1.activation and isinstance(block.act1, nn.Identity)
        assert not block.norm2.activation and block.norm2.tau is None
    for shortcut in (b.shortcut for b in net.blocks if isinstance(b.shortcut, nn.Sequential)):
        assert not shortcut[1].activation
    modules = list(net.modules())
    for before, after in itertools.pairwise(modules):
        if isinstance(before, FilterResponseNorm2d) and before.activation:
            assert not isinstance(after, nn.ReLU)
    assert not any(isinstance(m, nn.ReLU) for m in net.modules())
    small = build(compose_cfg, "frn", "small_cnn")
    assert all(isinstance(stage[2], nn.Identity) and stage[1].activation for stage in small.features)


def test_an_frn_block_computes_frn_tlu_then_frn_then_the_relu_after_the_addition(compose_cfg):
    net = build(compose_cfg, "frn", "resnet8")
    block = net.blocks[0]
    with torch.no_grad():
        for p in block.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + (1.0 if p.dim() == 1 else 0.0))
        block.norm1.tau.uniform_(-1.0, -0.2)  # negative thresholds: where the TLU is not a ReLU
    x = torch.randn(2, 16, 8, 8)

    def frn(z, layer):
        nu2 = z.pow(2).mean(dim=(2, 3), keepdim=True)
        return layer.weight.view(1, -1, 1, 1) * z / torch.sqrt(nu2 + 1e-6) + layer.bias.view(1, -1, 1, 1)

    with torch.no_grad():
        hidden = torch.maximum(
            frn(F.conv2d(x, block.conv1.weight, padding=1), block.norm1), block.norm1.tau.view(1, -1, 1, 1)
        )
        expected = F.relu(frn(F.conv2d(hidden, block.conv2.weight, padding=1), block.norm2) + x)
        torch.testing.assert_close(block(x), expected, atol=1e-5, rtol=1e-5)
    assert (hidden < 0).any()  # a negative τ lets negative responses through: no ReLU after the TLU
