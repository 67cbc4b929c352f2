"""The members' data side by side: each member's own loaders and device-side transforms, iterated and
applied inside its own RNG (:class:`src.sweep.pack.members.MemberRng`)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import pytorch_lightning as pl

from src.sweep.pack.members import MemberRng


class PackedLoader:
    """Each member's own loader, iterated inside its own RNG (:class:`MemberRng`): yields one list with
    each member's batch. A member's loader is built by its own datamodule, so batch sizes, order and
    the number of batches are its unpacked run's."""

    def __init__(self, loaders: Sequence[Any], rngs: Sequence[MemberRng]):
        self.loaders = list(loaders)
        self.rngs = list(rngs)

    def __len__(self) -> int:
        return len(self.loaders[0])

    def __iter__(self) -> Iterator[list[Any]]:
        iterators = []
        for loader, rng in zip(self.loaders, self.rngs, strict=True):
            with rng.active():
                iterators.append(iter(loader))
        while True:
            batch = []
            for iterator, rng in zip(iterators, self.rngs, strict=True):
                with rng.active():
                    try:
                        batch.append(next(iterator))
                    except StopIteration:
                        return
            yield batch


class PackedDataModule(pl.LightningDataModule):
    """The members' datamodules side by side: loaders of per-member batches, and each member's
    device-side transform (augmentation, normalization) applied in its own RNG."""

    def __init__(self, datamodules: Sequence[Any], rngs: Sequence[MemberRng], fused: bool = False):
        super().__init__()
        self.members = list(datamodules)
        self.rngs = list(rngs)
        self.fused = fused  # the fused loop draws its epochs itself: one training "batch" per epoch

    def _attach(self) -> None:
        for datamodule in self.members:
            datamodule.trainer = self.trainer

    def _loader(self, method: str) -> PackedLoader:
        self._attach()
        return PackedLoader([getattr(dm, method)() for dm in self.members], self.rngs)

    def train_dataloader(self) -> PackedLoader | list[int]:
        if self.fused:
            self._attach()
            return [0]  # one tick per epoch: src.training.epoch_loop draws the epoch on the device
        return self._loader("train_dataloader")

    def val_dataloader(self) -> PackedLoader:
        return self._loader("val_dataloader")

    def test_dataloader(self) -> PackedLoader:
        return self._loader("test_dataloader")

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        if self.fused and self.trainer is not None and self.trainer.training:
            return batch  # the epoch tick
        out = []
        for datamodule, rng, member_batch in zip(self.members, self.rngs, batch, strict=True):
            with rng.active():
                out.append(datamodule.on_after_batch_transfer(member_batch, dataloader_idx))
        return out
