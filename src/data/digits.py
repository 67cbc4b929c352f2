"""scikit-learn's 8×8 handwritten digits: the fastest smoke-test dataset (too easy to separate norms)."""

from __future__ import annotations

from typing import Any

import numpy as np

from src.data.arrays import ArrayDataModule, ImageArrays


class DigitsDataModule(ArrayDataModule):
    """The 1,797 digits of ``sklearn.datasets.load_digits`` (16 grey levels, scaled to 0..255),
    split into train and test by a stratified ``test_fraction`` fixed by ``test_seed``."""

    def __init__(self, test_fraction: float = 0.2, test_seed: int = 0, **kwargs: Any):
        super().__init__(**kwargs)
        self.test_fraction = test_fraction
        self.test_seed = test_seed

    def load_arrays(self) -> ImageArrays:
        from sklearn.datasets import load_digits
        from sklearn.model_selection import train_test_split

        digits = load_digits()
        images = np.clip(np.rint(digits.images * 255.0 / 16.0), 0, 255).astype(np.uint8)
        labels = digits.target.astype(np.int64)
        x_train, x_test, y_train, y_test = train_test_split(
            images, labels, test_size=self.test_fraction, random_state=self.test_seed, stratify=labels
        )
        return ImageArrays(x_train, y_train, x_test, y_test, classes=[str(d) for d in range(10)])
