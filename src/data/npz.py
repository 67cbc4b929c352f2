"""Any ``.npz`` with ``x_train``, ``y_train``, ``x_test``, ``y_test`` (MNIST, Fashion-MNIST, our subsets)."""

from __future__ import annotations

from typing import Any

import numpy as np

from src.data.arrays import ArrayDataModule, ImageArrays
from src.data.paths import find_file

REQUIRED_KEYS = ("x_train", "y_train", "x_test", "y_test")


class NpzDataModule(ArrayDataModule):
    """Images from an ``.npz``: uint8 ``x_*`` as (N, H, W), (N, H, W, C) or (N, C, H, W), integer
    ``y_*``; an optional ``classes`` array names the classes. Relative paths are looked up in the
    working directory, then in the project root."""

    def __init__(self, path: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.path = path

    def load_arrays(self) -> ImageArrays:
        file = find_file(
            self.path,
            "dataset.path",
            "Give dataset.path=<file.npz> holding x_train, y_train, x_test, y_test "
            "(e.g. ../shared/datasets/mnist.npz).",
        )
        with np.load(file, allow_pickle=False) as data:
            missing = [key for key in REQUIRED_KEYS if key not in data.files]
            if missing:
                raise ValueError(
                    f"dataset.path={self.path}: missing keys {missing}; an npz dataset needs "
                    f"{list(REQUIRED_KEYS)} (it has {sorted(data.files)})"
                )
            classes = [str(c) for c in data["classes"]] if "classes" in data.files else []
            return ImageArrays(*(data[key] for key in REQUIRED_KEYS), classes=classes)
