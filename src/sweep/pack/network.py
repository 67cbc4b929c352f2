"""K networks of one architecture as one module (:class:`PackedNet`: parameters and buffers stacked,
the forward one vmap of the template network), and the check that a pack trains exactly as its members
would alone (:func:`check_packable`, :class:`PackRefused`)."""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from src.norms import BatchRenorm2d
from src.sweep.pack.members import BuiltMember

#: norms vmap cannot batch, and why (one line each); a norm not listed is also refused if the packed
#: probe forward fails (:func:`check_packable`)
REFUSED_NORMS = {
    "spectral": "spectral norm's power iteration updates its vectors with out= operations, which vmap cannot batch",
}


class PackRefused(ValueError):
    """These runs cannot be packed (one line naming the norm or the setting, and why)."""


def _mangle(name: str) -> str:
    return name.replace(".", "__")


class PackedNet(nn.Module):
    """K networks of one architecture as one module: every parameter and buffer stacked along a new
    leading axis of size K, the forward one :func:`torch.func.vmap` of the template network.

    ``forward(x)`` takes (K, N, C, H, W), one batch per member, and returns (K, N, classes).
    """

    def __init__(self, nets: Sequence[nn.Module]):
        super().__init__()
        if len(nets) < 1:
            raise ValueError("a pack needs at least one network")
        self.size = len(nets)
        self.__dict__["template"] = copy.deepcopy(nets[0])  # stateless use only: not a submodule
        params, buffers = stack_module_state(list(nets))
        self.param_names = list(params)
        self.buffer_names = list(buffers)
        for name, value in params.items():
            self.register_parameter(_mangle(name), nn.Parameter(value.detach().clone()))
        for name, value in buffers.items():
            self.register_buffer(_mangle(name), value.detach().clone())
        self._renorms = [m for m in self.template.modules() if isinstance(m, BatchRenorm2d)]
        self._renorm_counters = [
            _mangle(f"{name}.num_batches_tracked")
            for name, m in self.template.named_modules()
            if isinstance(m, BatchRenorm2d)
        ]

    def state(self) -> dict[str, torch.Tensor]:
        """The stacked parameters and buffers by the template's names (what functional_call takes)."""
        named = {name: getattr(self, _mangle(name)) for name in self.param_names}
        named.update({name: getattr(self, _mangle(name)) for name in self.buffer_names})
        return named

    def forward(self, x: torch.Tensor, shared_input: bool = False) -> torch.Tensor:
        template = self.template
        if template.training != self.training:  # Lightning restores modes by flag, not through train()
            template.train(self.training)
        for module, counter in zip(self._renorms, self._renorm_counters, strict=True):
            module.packed_step = int(getattr(self, counter)[0])  # members step in lockstep

        def one(state: dict[str, torch.Tensor], images: torch.Tensor) -> torch.Tensor:
            return functional_call(template, state, (images,))

        return vmap(one, in_dims=(0, None if shared_input else 0), randomness="error")(self.state(), x)

    @torch.no_grad()
    def unpack(self, index: int, net: nn.Module) -> nn.Module:
        """Copy member ``index``'s parameters and buffers into ``net`` (a network of the template's
        architecture, e.g. the member's own) and return it."""
        for name in self.param_names:
            net.get_parameter(name).copy_(getattr(self, _mangle(name))[index])
        for name in self.buffer_names:
            net.get_buffer(name).copy_(getattr(self, _mangle(name))[index])
        return net


#: optimizer settings members of one pack may differ in: the fused step takes them per member
PER_MEMBER_OPTIM = ("base_lr", "optimizer.weight_decay")


def _leaves(value: object, prefix: str = "") -> dict[str, object]:
    if not isinstance(value, dict):
        return {prefix: value}
    out: dict[str, object] = {}
    for key, item in value.items():
        out.update(_leaves(item, f"{prefix}.{key}" if prefix else str(key)))
    return out


def optim_differences(members: Sequence[BuiltMember]) -> list[str]:
    """The ``optim`` keys whose values differ between the members (``base_lr``, ...)."""
    from omegaconf import OmegaConf

    leaves = [_leaves(OmegaConf.to_container(m.member.cfg.optim, resolve=True)) for m in members]
    keys = sorted(set().union(*leaves))
    return [k for k in keys if len({repr(leaf.get(k)) for leaf in leaves}) > 1]


def check_packable(members: Sequence[BuiltMember], fused: str | None = None) -> None:
    """Raise :class:`PackRefused` (one line naming the norm or setting) when these members cannot be
    trained packed exactly: a norm vmap cannot batch, several devices, gradient clipping, compilation
    outside the fused step, optimizer settings that differ (only learning rate and weight decay may,
    and only with the fused step, ``fused`` its mode)."""
    cfg = members[0].member.cfg
    name = members[0].norm.name
    if name in REFUSED_NORMS:
        raise PackRefused(f"norm={name} cannot be packed: {REFUSED_NORMS[name]}")
    if any(m.member.cfg.get("ckpt_path") for m in members):
        raise PackRefused("ckpt_path names one run's checkpoint: such a run trains alone")
    if fused is None and any(bool(m.member.cfg.get("compile", False)) for m in members):
        raise PackRefused("compile=true: a pack compiles only through its fused step (use fused_step=compile or auto)")
    differ = optim_differences(members)
    fixed = [k for k in differ if k not in PER_MEMBER_OPTIM]
    if fixed:
        raise PackRefused(
            f"the members differ in optim.{fixed[0]}: a pack shares it (only {PER_MEMBER_OPTIM} may differ)"
        )
    if differ and fused is None:
        raise PackRefused(
            f"the members differ in optim.{differ[0]}: per-member learning rates and weight decays need the fused "
            "step (fused_step=auto)"
        )
    trainer = cfg.trainer
    if int(trainer.get("devices", 1) or 1) > 1 or int(trainer.get("num_nodes", 1) or 1) > 1:
        raise PackRefused("packing runs on one device: trainer.devices and trainer.num_nodes must be 1")
    if trainer.get("gradient_clip_val"):
        raise PackRefused("gradient clipping by norm mixes the members' gradients: unset trainer.gradient_clip_val")
    packed = PackedNet([copy.deepcopy(m.net) for m in members]).train()
    shape = (len(members), cfg.batch, *members[0].datamodule.input_shape)
    try:
        generator = torch.Generator().manual_seed(0)  # the global RNG (each member's own) stays untouched
        packed(torch.randn(shape, generator=generator)).sum().backward()
    except RuntimeError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise PackRefused(f"norm={name} cannot be packed: vmap fails on it ({first})") from None
