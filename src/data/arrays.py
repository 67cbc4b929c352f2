"""The in-memory datamodule every dataset builds on."""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    DistributedSampler,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from src.data.augment import AUGMENTATIONS
from src.data.device_loader import DeviceBatches


@dataclass
class ImageArrays:
    """A dataset's two splits as uint8 images (N, H, W, C) and int64 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    classes: list[str] = field(default_factory=list)


def as_nhwc_uint8(images: np.ndarray, key: str, source: str) -> np.ndarray:
    """Check an image array and return it as (N, H, W, C) uint8; (N, H, W) gains a channel axis."""
    if images.dtype != np.uint8:
        raise ValueError(f"{source}: {key} has dtype {images.dtype}; images must be uint8 pixels in 0..255")
    if images.ndim == 3:
        return images[..., None]
    if images.ndim == 4 and images.shape[-1] in (1, 3):
        return images
    if images.ndim == 4 and images.shape[1] in (1, 3):
        return np.ascontiguousarray(images.transpose(0, 2, 3, 1))
    raise ValueError(
        f"{source}: {key} has shape {images.shape}; expected (N, H, W), (N, H, W, C) or (N, C, H, W) "
        f"with 1 or 3 channels"
    )


def check_labels(labels: np.ndarray, count: int, key: str, source: str) -> np.ndarray:
    """Check a label vector's length and integer type and return it as int64."""
    if labels.ndim != 1 or len(labels) != count:
        raise ValueError(f"{source}: {key} has shape {labels.shape} but there are {count} images")
    if not np.issubdtype(labels.dtype, np.integer):
        raise ValueError(f"{source}: {key} has dtype {labels.dtype}; labels must be integers")
    return labels.astype(np.int64)


class ArrayDataModule(pl.LightningDataModule):
    """Holds a dataset in memory and serves batches of normalized (and augmented) images.

    The training split loses ``val_size`` images to a validation split (a count, or a fraction of the
    training split), drawn with ``split_seed`` so every run of a study validates on the same images.
    ``train_size`` then keeps a random subset of what remains. Means and standard deviations are
    per channel over the training images. Batches are uint8 until they reach the model's device, where
    :meth:`on_after_batch_transfer` scales, augments (training only) and normalizes them.

    Training batches are drawn without replacement and the last partial batch is dropped, so every
    step normalizes over exactly ``batch_size`` images. With ``on_device`` (``auto``: when training on
    a GPU) the splits are copied to the device once and batches are indexed there
    (:class:`src.data.device_loader.DeviceBatches`): no loader, no host→device copy per step.

    Under DDP (a trainer with ``world_size`` > 1) ``batch_size`` stays the per-device batch: each rank
    draws its batches from its own shard of the epoch's permutation (:class:`ShardedBatchSampler`), and
    evaluates its own shard of the validation and test images (:class:`EvalShardSampler`), so every
    image is counted once in the metrics, which torchmetrics sums over the ranks.
    """

    def __init__(
        self,
        name: str,
        batch_size: int,
        val_size: int | float = 0.1,
        train_size: int | None = None,
        split_seed: int = 0,
        augment: str = "none",
        eval_batch_size: int = 500,
        on_device: bool | str = "auto",
    ):
        super().__init__()
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch={batch_size!r} is invalid: it must be an integer >= 1")
        if augment not in AUGMENTATIONS:
            raise ValueError(f"dataset.augment={augment!r} is invalid: choose one of {sorted(AUGMENTATIONS)}")
        if isinstance(split_seed, bool) or not isinstance(split_seed, int):
            raise ValueError(f"dataset.split_seed={split_seed!r} is invalid: it must be an integer")
        if isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int) or eval_batch_size < 1:
            raise ValueError(f"dataset.eval_batch_size={eval_batch_size!r} is invalid: it must be an integer >= 1")
        self.name = name
        self.batch_size = batch_size
        self.val_size = val_size
        self.train_size = train_size
        self.split_seed = split_seed
        self.augment = AUGMENTATIONS[augment]
        self.eval_batch_size = eval_batch_size
        if on_device not in (True, False, "auto"):
            raise ValueError(f"dataset.on_device={on_device!r} is invalid: use true, false or auto")
        self.on_device = on_device
        self._device_splits: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] = []
        self.splits: dict[str, TensorDataset] = {}
        self.mean = torch.zeros(1)
        self.std = torch.ones(1)
        # set by the trainer's builder for the fused loop (src/training/epoch_loop.py), which draws each
        # epoch on the device itself: training then serves one tick per epoch
        self.fused_loop = False

    def load_arrays(self) -> ImageArrays:
        """Return the raw dataset; subclasses implement this."""
        raise NotImplementedError

    # ----------------------------------------------------------------------------------------- setup
    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        arrays = self.load_arrays()
        source = f"dataset={self.name}"
        x_train = as_nhwc_uint8(arrays.x_train, "x_train", source)
        x_test = as_nhwc_uint8(arrays.x_test, "x_test", source)
        y_train = check_labels(arrays.y_train, len(x_train), "y_train", source)
        y_test = check_labels(arrays.y_test, len(x_test), "y_test", source)
        if x_train.shape[1:] != x_test.shape[1:]:
            raise ValueError(f"{source}: train images {x_train.shape[1:]} and test images {x_test.shape[1:]} differ")
        num_classes = len(arrays.classes) or int(max(y_train.max(), y_test.max())) + 1
        for key, labels in (("y_train", y_train), ("y_test", y_test)):
            if labels.min() < 0 or labels.max() >= num_classes:
                raise ValueError(f"{source}: {key} has labels outside 0..{num_classes - 1}")
        if len(np.unique(y_train)) < 2:
            raise ValueError(f"{source}: the training split has a single class; a classifier needs two or more")
        self.classes = list(arrays.classes) or [str(c) for c in range(num_classes)]

        train_idx, val_idx = self._split_indices(len(x_train))
        if self.batch_size > len(train_idx):
            raise ValueError(
                f"batch={self.batch_size} is larger than the training split ({len(train_idx)} images): "
                f"use batch <= {len(train_idx)}"
            )
        train_pixels = x_train[train_idx].reshape(-1, x_train.shape[-1]).astype(np.float64) / 255.0
        self.mean = torch.tensor(train_pixels.mean(axis=0), dtype=torch.float32).view(1, -1, 1, 1)
        self.std = torch.tensor(train_pixels.std(axis=0), dtype=torch.float32).clamp_min(1e-3).view(1, -1, 1, 1)

        def tensors(images: np.ndarray, labels: np.ndarray) -> TensorDataset:
            nchw = torch.from_numpy(np.ascontiguousarray(images.transpose(0, 3, 1, 2)))
            return TensorDataset(nchw, torch.from_numpy(labels))

        self.splits = {
            "train": tensors(x_train[train_idx], y_train[train_idx]),
            "val": tensors(x_train[val_idx], y_train[val_idx]),
            "test": tensors(x_test, y_test),
        }

    def _split_indices(self, count: int) -> tuple[np.ndarray, np.ndarray]:
        """Random (train, val) index arrays, fixed by ``split_seed``."""
        val = self.val_size
        n_val = round(val * count) if isinstance(val, float) else int(val)
        if n_val < 1 or n_val >= count:
            raise ValueError(
                f"dataset.val_size={val} gives {n_val} validation images out of {count} training images: "
                f"it must leave at least one image on each side (a count 1..{count - 1} or a fraction in (0, 1))"
            )
        order = np.random.default_rng(self.split_seed).permutation(count)
        val_idx, train_idx = np.sort(order[:n_val]), order[n_val:]
        if self.train_size is not None:
            if not 1 <= self.train_size <= len(train_idx):
                raise ValueError(
                    f"dataset.train_size={self.train_size} is invalid: it must be in 1..{len(train_idx)} "
                    f"(the training images left after the validation split)"
                )
            train_idx = train_idx[: self.train_size]
        return np.sort(train_idx), val_idx

    # ---------------------------------------------------------------------------------- properties
    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the images, for building the model."""
        return tuple(self.splits["train"].tensors[0].shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def split_sizes(self) -> dict[str, int]:
        return {split: len(data) for split, data in self.splits.items()}

    # -------------------------------------------------------------------------------- dataloaders
    def _ranks(self) -> tuple[int, int]:
        """(world size, global rank) of the trainer this datamodule is attached to; (1, 0) without one."""
        trainer = self.trainer
        if trainer is None:
            return 1, 0
        return int(trainer.world_size), int(trainer.global_rank)

    def _device_batches(self, split: str, batch_size: int, train: bool) -> DeviceBatches | None:
        """Batches indexed on the training device, when ``on_device`` asks for it (``auto``: on a GPU).

        Evaluation under DDP keeps the host loaders, which split the images over ranks without loss.
        """
        strategy = getattr(self.trainer, "strategy", None)  # no trainer (or a stand-in): the CPU
        device = strategy.root_device if strategy is not None else torch.device("cpu")
        wanted = device.type == "cuda" if self.on_device == "auto" else bool(self.on_device)
        world_size, rank = self._ranks()
        if not wanted or (world_size > 1 and not train):
            return None
        if split not in self._device_splits:
            images, labels = self.splits[split].tensors
            self._device_splits[split] = (images.to(device), labels.to(device))
        images, labels = self._device_splits[split]
        return DeviceBatches(
            images, labels, batch_size, shuffle=train, drop_last=train, shard=rank, num_shards=world_size
        )

    def train_dataloader(self) -> DataLoader | DeviceBatches | list[int]:
        if self.fused_loop:
            return [0]
        on_device = self._device_batches("train", self.batch_size, train=True)
        if on_device is not None:
            return on_device
        data = self.splits["train"]
        world_size, rank = self._ranks()
        if world_size > 1:
            # every rank seeds its permutation alike (seed_everything), and Lightning calls set_epoch
            sampler = ShardedBatchSampler(data, self.batch_size, world_size, rank, seed=torch.initial_seed())
            if len(sampler) == 0:
                raise ValueError(
                    f"batch={self.batch_size} on {world_size} devices needs {self.batch_size * world_size} training "
                    f"images per step; the training split has {len(data)}"
                )
        else:
            sampler = BatchSampler(RandomSampler(data), self.batch_size, drop_last=True)
        return DataLoader(data, sampler=sampler, batch_size=None)

    def _eval_loader(self, split: str) -> DataLoader | DeviceBatches:
        on_device = self._device_batches(split, self.eval_batch_size, train=False)
        if on_device is not None:
            return on_device
        data = self.splits[split]
        world_size, rank = self._ranks()
        if world_size > 1 and len(data) >= world_size:
            sampler = EvalShardSampler(data, self.eval_batch_size, world_size, rank)
        else:  # a single process, or fewer images than ranks: every rank evaluates all (each counted world_size×)
            sampler = BatchSampler(SequentialSampler(data), self.eval_batch_size, drop_last=False)
        return DataLoader(data, sampler=sampler, batch_size=None)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._eval_loader("test")

    def on_after_batch_transfer(self, batch: list[torch.Tensor], dataloader_idx: int) -> list[torch.Tensor]:
        if self.fused_loop and self.trainer is not None and self.trainer.training:
            return batch  # the fused loop's epoch tick
        images, labels = batch
        images = images.float().div_(255.0)
        if self.augment is not None and self.trainer is not None and self.trainer.training:
            images = self.augment(images, mean=self.mean)
        images = (images - self.mean.to(images.device)) / self.std.to(images.device)
        return [images, labels]


class ShardedBatchSampler(DistributedSampler):
    """Training batches of one rank under DDP: the epoch's permutation of the dataset (the same on every
    rank: ``seed`` + epoch), cut into ``num_replicas`` disjoint shards of equal length (the remainder
    dropped), and this rank's shard into full batches of ``batch_size`` (the last partial one dropped).

    Every rank takes the same number of steps, each normalizing over ``batch_size`` images. A
    :class:`~torch.utils.data.DistributedSampler`, so Lightning neither wraps it in its own distributed
    sampler nor forgets to call :meth:`set_epoch` at the start of each epoch.
    """

    def __init__(self, data: TensorDataset, batch_size: int, num_replicas: int, rank: int, seed: int = 0):
        super().__init__(data, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.batch_size = batch_size

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        indices = list(super().__iter__())
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            yield indices[start : start + self.batch_size]

    def __len__(self) -> int:
        return self.num_samples // self.batch_size


class EvalShardSampler(DistributedSampler):
    """Evaluation batches of one rank under DDP: image ``i`` goes to rank ``i mod num_replicas``, in order,
    without the padding of :class:`~torch.utils.data.DistributedSampler` (which repeats images), so each
    image is counted once. Every rank gets the same number of batches (at most ``batch_size`` images each),
    as many as the largest shard needs, so no rank waits for another at a collective."""

    def __init__(self, data: TensorDataset, batch_size: int, num_replicas: int, rank: int):
        if len(data) < num_replicas:
            raise ValueError(f"{len(data)} images cannot be sharded over {num_replicas} ranks")
        super().__init__(data, num_replicas=num_replicas, rank=rank, shuffle=False, drop_last=False)
        self.batch_size = batch_size
        self.batches = math.ceil(math.ceil(len(data) / num_replicas) / batch_size)

    def __iter__(self) -> Iterator[list[int]]:  # type: ignore[override]
        shard = np.arange(self.rank, len(self.dataset), self.num_replicas)  # type: ignore[arg-type]
        for batch in np.array_split(shard, self.batches):
            yield batch.tolist()

    def __len__(self) -> int:
        return self.batches
