"""Packed runs: the K seeds of one configuration trained as one model in one process.

At batch 2 a step costs mostly per-operation overhead, so K runs that differ only in their seed train
for little more than the price of one when every operation does the work of all K at once. Each member
is built exactly as its unpacked run (:func:`src.training.experiment.build_model` under its own seed); the K
networks' parameters and buffers are stacked along a new leading axis and the step runs the network
once under :func:`torch.func.vmap` (convolutions become grouped convolutions, norms keep per-member
statistics). Nothing is shared between members but the operations:

- initialisation: each member's network is built under its own seed, as unpacked;
- data order and augmentation: each member draws from its own copy of the global RNG state
  (:class:`~src.sweep.pack.members.MemberRng`), swapped in around everything that draws (its loaders' iterators, its
  augmentation), so it sees the batches its unpacked run sees, in the same order;
- norm statistics: per member (vmap batches every statistic, and every running buffer, per member);
- optimizer state: one SGD over the stacked parameters is per member, because SGD (momentum, weight
  decay) is elementwise and the members of one configuration share the learning rate and schedule;
  the loss is the sum of the members' losses, whose gradient is each member's own gradient;
- divergence: a member whose loss is no longer finite is recorded as diverged (the unpacked run's
  message) and leaves the sum; the others go on (training stops when none is left).

Norms that vmap cannot batch are refused with one line (:class:`PackRefused`); the launcher
(:mod:`src.sweep.launcher`) then trains those runs one by one, unpacked.

The package, along its seams: :mod:`~src.sweep.pack.members` (each member built as its unpacked run,
with its own RNG), :mod:`~src.sweep.pack.network` (the K networks as one vmapped module, and what
cannot be packed), :mod:`~src.sweep.pack.data` (the members' loaders side by side),
:mod:`~src.sweep.pack.module` (the LightningModule of K members) and :mod:`~src.sweep.pack.training`
(the run lifecycle per member around one fit of all of them).
"""

from src.sweep.pack.data import PackedDataModule, PackedLoader
from src.sweep.pack.members import BuiltMember, MemberRng, build_member
from src.sweep.pack.module import PackedClassifier
from src.sweep.pack.network import REFUSED_NORMS, PackedNet, PackRefused, check_packable
from src.sweep.pack.training import PackOutcome, fit_pack, pack_id, train_pack, write_member_metrics

__all__ = [
    "REFUSED_NORMS",
    "BuiltMember",
    "MemberRng",
    "PackOutcome",
    "PackRefused",
    "PackedClassifier",
    "PackedDataModule",
    "PackedLoader",
    "PackedNet",
    "build_member",
    "check_packable",
    "fit_pack",
    "pack_id",
    "train_pack",
    "write_member_metrics",
]
