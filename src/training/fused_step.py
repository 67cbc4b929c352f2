"""The whole training step as one function of device tensors: forward, per-member loss, backward, SGD.

A study's CNNs are small: at batch 2–32 a step is a few hundred kernel launches and almost no arithmetic,
so its cost is launches and Python (Lightning's per-step hooks, the optimizer's loops, the host reading a
loss). :class:`FusedSGDStep` trains K stacked members (a pack; K = 1 for a single run) with

    L_k = CE(f(θ_k; x_k), y_k)                       per member k, f the template network (vmapped)
    g_k = ∇_θ L_k + λ_k θ_k                          weight decay λ (torch.optim.SGD's ``weight_decay``)
    b_k ← μ b_k + g_k                                momentum buffer (``dampening`` 0; b starts at 0)
    θ_k ← θ_k − η_k (g_k + μ b_k  if nesterov else  b_k)

with η_k, λ_k read from device tensors (one value per member, so members that differ in learning rate or
weight decay share a pack) and every update a ``torch._foreach`` op over the stacked parameters: the same
arithmetic as ``torch.optim.SGD`` on each member alone (``tests/test_fused_step.py`` checks 24 steps of
every packable norm). Nothing in a step reads a value back to the host.

``mode``:
- ``eager``: the step as written (the reference; CPU or GPU);
- ``compile``: the forward and loss through ``torch.compile`` (AOTAutograd compiles its backward too),
  the update as fused ``foreach`` kernels (on a CPU its compile time is paid by every run: opt in);
- ``graph`` (CUDA): after ``WARMUP_STEPS`` eager steps on a side stream, the whole step (forward, loss,
  backward, update, learning rate read from a device tensor) is captured once as one CUDA graph
  (``torch.cuda.graph``) over static input buffers, and every later step is one graph replay plus the
  copy of its batch into those buffers.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

MODES = ("eager", "compile", "graph")
WARMUP_STEPS = 3  # eager steps on a side stream before a CUDA graph is captured (torch.cuda.graph's rule)


def resolve_mode(choice: object, device: torch.device, compile: bool = False) -> str | None:
    """``fused_step`` as a mode for ``device``: None for ``off``; ``auto`` is ``graph`` on CUDA, elsewhere
    ``compile`` when the run asks for compilation (``compile=true``) and ``eager`` otherwise (on a CPU a
    compiled step pays its compile time in every run); ``graph`` off CUDA is refused with one line."""
    if choice in (None, False, "off"):
        return None
    if choice == "auto":
        return "graph" if device.type == "cuda" else ("compile" if compile else "eager")
    if choice not in MODES:
        raise FusedStepRefused(f"fused_step={choice!r} is invalid: choose one of off, auto, {', '.join(MODES)}")
    if choice == "graph" and device.type != "cuda":
        raise FusedStepRefused(
            f"fused_step=graph on {device.type}: CUDA graphs need a CUDA device (use compile or auto)"
        )
    return str(choice)


#: Trainer keys whose per-step meaning the fused loop (one Lightning step an epoch) would drop: the values
#: that leave nothing to drop, and what would be dropped.
PER_STEP_TRAINER_KEYS: dict[str, tuple[tuple[Any, ...], str]] = {
    "limit_train_batches": ((None, 1.0, 1), "the fused loop trains whole epochs"),  # debug=fast
    "overfit_batches": ((None, 0, 0.0), "the fused loop draws every epoch from the whole split"),  # debug=overfit
    "val_check_interval": ((None, 1.0, 1), "the fused loop validates once an epoch"),
    "gradient_clip_val": ((None, 0, 0.0), "the fused update does not clip gradients"),
}


def fused_obstacle(
    world_size: int = 1,
    trainer: Mapping[str, Any] | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    saved_fused: bool | None = None,
) -> str | None:
    """Why the fused loop cannot train this run as the per-step loop would, or None: several devices
    (the fused step does not all-reduce), a trainer key acting per step (:data:`PER_STEP_TRAINER_KEYS`),
    an optimizer other than plain SGD (:func:`sgd_settings`), or a checkpoint to resume that the per-step
    loop wrote (``saved_fused`` False; None: no checkpoint)."""
    if world_size > 1:
        return f"{world_size} devices: the fused step trains on one device"
    for key, (neutral, dropped) in PER_STEP_TRAINER_KEYS.items():
        value = (trainer or {}).get(key)
        if value not in neutral:
            return f"trainer.{key}={value!r}: {dropped}"
    if optimizer is not None:
        try:
            sgd_settings(optimizer)
        except FusedStepRefused as refused:
            return str(refused)
    if saved_fused is False:
        return "the checkpoint it resumes was written by the per-step loop"
    return None


def mode_for(
    choice: object,
    device: torch.device,
    net: torch.nn.Module,
    world_size: int = 1,
    trainer: Mapping[str, Any] | None = None,
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    saved_fused: bool | None = None,
    compile: bool = False,
) -> str | None:
    """The fused-step mode a run (or a pack, ``net`` its template) trains with on ``device``
    (:func:`resolve_mode`), None for the per-step loop.

    Where the fused loop cannot train the run as the per-step loop would (:func:`fused_obstacle`),
    ``auto`` takes the per-step loop (and says why in the log) and a named mode is refused in one line.
    BatchRenorm's clipping follows a step count kept on the host, which a trace or a graph would freeze,
    so such a net steps eager."""
    from src.norms import BatchRenorm2d

    mode = resolve_mode(choice, device, compile)
    if mode is None:
        return None
    obstacle = fused_obstacle(world_size, trainer, optimizer, saved_fused)
    if obstacle is not None:
        if choice == "auto":
            log.info("fused_step=auto: %s; the per-step loop trains it", obstacle)
            return None
        raise FusedStepRefused(f"fused_step={choice}: {obstacle} (use fused_step=auto or off)")
    if mode in ("compile", "graph") and any(isinstance(m, BatchRenorm2d) for m in net.modules()):
        return "eager"
    return mode


def checkpoint_loop(checkpoint: Any, key: str) -> bool | None:
    """Whether the checkpoint at ``checkpoint`` (a path, or None for no checkpoint) was written by the
    fused loop: its ``<key>`` section (``normlab`` for a run, ``normlab_pack`` for a pack) holds a
    ``fused`` state; None when there is no checkpoint."""
    if checkpoint is None:
        return None
    saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    return "fused" in (saved.get(key) or {})


class FusedStepRefused(ValueError):
    """This run cannot use the fused step (one line naming the key, the value and what is allowed)."""


@dataclass(frozen=True)
class SGDSettings:
    """torch.optim.SGD's arguments the fused update implements."""

    momentum: float = 0.0
    weight_decay: float = 0.0
    nesterov: bool = False


def sgd_settings(optimizer: Callable[..., torch.optim.Optimizer]) -> SGDSettings:
    """The SGD arguments of ``optim.optimizer`` (a Hydra ``_partial_`` of ``torch.optim.SGD``); refuses
    another optimizer, a non-zero ``dampening`` and ``maximize`` with one line."""
    target = getattr(optimizer, "func", optimizer)
    if target is not torch.optim.SGD:
        name = getattr(target, "__qualname__", repr(target))
        raise FusedStepRefused(f"optim.optimizer={name}: the fused step implements torch.optim.SGD only")
    keywords = dict(getattr(optimizer, "keywords", {}) or {})
    if float(keywords.get("dampening", 0.0)) != 0.0:
        raise FusedStepRefused(f"optim.optimizer.dampening={keywords['dampening']}: the fused step needs 0")
    if keywords.get("maximize"):
        raise FusedStepRefused("optim.optimizer.maximize=true: the fused step minimizes")
    return SGDSettings(
        momentum=float(keywords.get("momentum", 0.0)),
        weight_decay=float(keywords.get("weight_decay", 0.0)),
        nesterov=bool(keywords.get("nesterov", False)),
    )


def member_losses(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """(K,) mean cross-entropy of each member: ``logits`` (K, N, classes), ``labels`` (K, N)."""
    k, n, classes = logits.shape
    per_image = F.cross_entropy(logits.reshape(k * n, classes), labels.reshape(k * n), reduction="none")
    return per_image.reshape(k, n).mean(dim=1)


def _per_member(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """(K,) values shaped to broadcast over a stacked parameter (K, ...)."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


class FusedSGDStep:
    """One training step of K stacked members (see the module docstring for the arithmetic).

    Args:
        forward: (K, N, C, H, W) images → (K, N, classes) logits, computed from ``params`` (and buffers
            the forward updates in place, e.g. BN's running statistics).
        params: the stacked parameters (K leading), updated in place.
        settings: momentum, weight decay and nesterov (:func:`sgd_settings`).
        weight_decay: optional (K,) per-member weight decay (default: ``settings.weight_decay`` for all).
        mode: ``eager``, ``compile`` or ``graph`` (CUDA only).
        members: K (default: the parameters' leading size; 1 for a single run's own unstacked parameters).
        compile_backend: ``torch.compile``'s backend in ``compile`` mode (``inductor``; the tests also
            use ``aot_eager``, the same traced forward and backward without code generation).
    """

    def __init__(
        self,
        forward: Callable[[torch.Tensor], torch.Tensor],
        params: Sequence[torch.nn.Parameter],
        settings: SGDSettings,
        weight_decay: torch.Tensor | None = None,
        mode: str = "eager",
        compile_backend: str = "inductor",
        members: int | None = None,
    ):
        if mode not in MODES:
            raise FusedStepRefused(f"fused_step={mode}: choose one of {', '.join(MODES)}")
        self.params = list(params)
        if not self.params:
            raise ValueError("the fused step needs parameters")
        device = self.params[0].device
        if mode == "graph" and device.type != "cuda":
            raise FusedStepRefused(f"fused_step=graph on {device.type}: CUDA graphs need a CUDA device")
        self.settings = settings
        self.mode = mode
        size = int(members) if members is not None else self.params[0].shape[0]
        decay = weight_decay if weight_decay is not None else torch.full((size,), settings.weight_decay)
        self.weight_decay = [_per_member(decay.to(device, p.dtype), p) for p in self.params]
        self.momentum = [torch.zeros_like(p, memory_format=torch.preserve_format) for p in self.params]
        self.active = torch.ones(size, dtype=torch.bool, device=device)  # a diverged member leaves the sum
        self._loss = functools.partial(self._losses, forward)
        if mode == "compile":
            self._loss = torch.compile(self._loss, dynamic=False, backend=compile_backend)
        self._graph: torch.cuda.CUDAGraph | None = None
        self._static: dict[str, torch.Tensor] = {}
        self._steps = 0

    @staticmethod
    def _losses(forward: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor, labels: torch.Tensor):
        return member_losses(forward(images), labels)

    def _step(self, images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """The step itself: returns the (K,) losses (detached); ``lr`` is (K,) on the device."""
        losses = self._loss(images, labels)
        total = torch.where(self.active, losses, torch.zeros_like(losses)).sum()
        grads = torch.autograd.grad(total, self.params)
        with torch.no_grad():
            grads = [g.add(p * wd) for g, p, wd in zip(grads, self.params, self.weight_decay, strict=True)]
            mu = self.settings.momentum
            if mu:
                torch._foreach_mul_(self.momentum, mu)
                torch._foreach_add_(self.momentum, grads)
                direction = (
                    torch._foreach_add(grads, self.momentum, alpha=mu) if self.settings.nesterov else self.momentum
                )
            else:
                direction = grads
            scaled = [d * _per_member(-lr.to(d.dtype), d) for d in direction]
            torch._foreach_add_(self.params, scaled)
        return losses.detach()

    def __call__(self, images: torch.Tensor, labels: torch.Tensor, lr: torch.Tensor) -> torch.Tensor:
        """Train one step on ``images`` (K, N, C, H, W), ``labels`` (K, N) at learning rates ``lr`` (K,);
        returns the (K,) losses as a device tensor (in ``graph`` mode a static buffer the next step
        overwrites: copy it to keep it)."""
        if self.mode != "graph":
            return self._step(images, labels, lr)
        if self._graph is None and self._steps < WARMUP_STEPS:
            self._steps += 1
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                losses = self._step(images, labels, lr)
            torch.cuda.current_stream().wait_stream(side)
            return losses
        if self._graph is None:
            self._static = {"images": images.clone(), "labels": labels.clone(), "lr": lr.clone()}
            self._graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(self._graph):
                self._static["losses"] = self._step(self._static["images"], self._static["labels"], self._static["lr"])
        else:
            self._static["images"].copy_(images)
            self._static["labels"].copy_(labels)
            self._static["lr"].copy_(lr)
        self._graph.replay()
        return self._static["losses"]

    def state_dict(self) -> dict[str, list[torch.Tensor]]:
        """The momentum buffers (a checkpoint's optimizer state)."""
        return {"momentum": [b.detach().clone() for b in self.momentum]}

    def load_state_dict(self, state: dict[str, list[torch.Tensor]]) -> None:
        """Restore the momentum buffers in place (a captured graph keeps reading the same tensors)."""
        with torch.no_grad():
            for buffer, saved in zip(self.momentum, state["momentum"], strict=True):
                buffer.copy_(saved.to(buffer.device))
