"""Rebuild ``fashion_mnist_small.npz``, the embedded default dataset, from the full Fashion-MNIST.

The subset is class-balanced and deterministic: the first 1,000 training images of each class and the
first 200 test images of each class, in their original order. The file is a zip with LZMA members (which
``numpy.load`` reads like any ``.npz``) so that 12,000 real images fit in under 5 MB.

Usage: python src/data/assets/make_fashion_mnist_small.py ../shared/datasets/fashion_mnist.npz
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import numpy as np

TRAIN_PER_CLASS = 1000
TEST_PER_CLASS = 200


def first_per_class(labels: np.ndarray, per_class: int) -> np.ndarray:
    """Indices of the first ``per_class`` examples of every class, in original order."""
    picks = [np.flatnonzero(labels == c)[:per_class] for c in np.unique(labels)]
    return np.sort(np.concatenate(picks))


def write_lzma_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Write arrays as an ``.npz`` whose members are LZMA-compressed (smaller than deflate)."""
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_LZMA) as zf:
        for key, value in arrays.items():
            buffer = io.BytesIO()
            np.save(buffer, value, allow_pickle=False)
            zf.writestr(f"{key}.npy", buffer.getvalue())


def main(source: str) -> None:
    with np.load(source) as full:
        train_idx = first_per_class(full["y_train"], TRAIN_PER_CLASS)
        test_idx = first_per_class(full["y_test"], TEST_PER_CLASS)
        arrays = {
            "x_train": full["x_train"][train_idx],
            "y_train": full["y_train"][train_idx].astype(np.int64),
            "x_test": full["x_test"][test_idx],
            "y_test": full["y_test"][test_idx].astype(np.int64),
            "idx_train": train_idx,
            "idx_test": test_idx,
        }
    target = Path(__file__).with_name("fashion_mnist_small.npz")
    write_lzma_npz(target, arrays)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/fashion_mnist.npz")
