"""Standard datasets through torchvision (the optional ``vision`` extra), downloaded into ``root``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from src.data.arrays import ArrayDataModule, ImageArrays

VISION_EXTRA = "pip install -e '.[vision]'"


def _to_numpy(values: Any) -> np.ndarray:
    return values.numpy() if hasattr(values, "numpy") else np.asarray(values)


def _train_flag(cls: Any, root: str, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    data = cls(root=root, train=train, download=download)
    return _to_numpy(data.data), _to_numpy(data.targets)


def _svhn(cls: Any, root: str, train: bool, download: bool) -> tuple[np.ndarray, np.ndarray]:
    data = cls(root=root, split="train" if train else "test", download=download)
    return _to_numpy(data.data), _to_numpy(data.labels)


# name -> (torchvision class name, loader returning (images, labels) for one split)
TORCHVISION_DATASETS: dict[str, tuple[str, Callable[..., tuple[np.ndarray, np.ndarray]]]] = {
    "cifar10": ("CIFAR10", _train_flag),
    "cifar100": ("CIFAR100", _train_flag),
    "mnist": ("MNIST", _train_flag),
    "fashion_mnist": ("FashionMNIST", _train_flag),
    "svhn": ("SVHN", _svhn),
}


class TorchvisionDataModule(ArrayDataModule):
    """A torchvision dataset held in memory. ``download`` fetches it into ``root`` when a network is
    available; offline, place the files torchvision expects under ``root`` and set ``download=false``."""

    def __init__(self, dataset: str, root: str = "data", download: bool = True, **kwargs: Any):
        super().__init__(**kwargs)
        if dataset not in TORCHVISION_DATASETS:
            raise ValueError(f"dataset.dataset={dataset!r} is invalid: choose one of {sorted(TORCHVISION_DATASETS)}")
        self.dataset = dataset
        self.root = root
        self.download = download

    def load_arrays(self) -> ImageArrays:
        try:
            import torchvision.datasets as tv_datasets
        except ImportError as error:
            raise ModuleNotFoundError(
                f"dataset={self.name} needs torchvision, which is not installed ({error}): {VISION_EXTRA}, "
                f"or use dataset=npz / dataset=image_folder with local files"
            ) from None
        class_name, load_split = TORCHVISION_DATASETS[self.dataset]
        cls = getattr(tv_datasets, class_name)
        try:
            x_train, y_train = load_split(cls, self.root, True, self.download)
            x_test, y_test = load_split(cls, self.root, False, self.download)
        except (OSError, RuntimeError) as error:
            raise RuntimeError(
                f"dataset={self.name}: could not load {class_name} from root={self.root} "
                f"(download={self.download}): {error}. Without a network, put the files torchvision "
                f"expects under {self.root}/ or use dataset=npz / dataset=image_folder."
            ) from error
        return ImageArrays(x_train.astype(np.uint8), y_train, x_test.astype(np.uint8), y_test)
