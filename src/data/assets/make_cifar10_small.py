"""Rebuild ``cifar10_small.npz``, the embedded CIFAR-10 subset, from the CIFAR-10 JPEG archive.

Real CIFAR-10 images (the JPEG q75 copy in ``../shared/datasets``, see its README for provenance),
downsampled from 32×32 to 16×16 by averaging each 2×2 block of pixels (as the downsampled-ImageNet
studies do), so that a CPU trains on them 4× faster and the file stays under 5 MB. Class-balanced and
deterministic: the first 550 training images of each class and the first 100 test images of each class,
by their rank within the class in the original order (the ``NNNN`` of each file name). LZMA members,
as ``fashion_mnist_small.npz``; ``idx_*`` keep each image's (class, rank) as class × 10,000 + rank.

Usage: python src/data/assets/make_cifar10_small.py ../shared/datasets/cifar10_jpeg.tar.gz
"""

from __future__ import annotations

import io
import sys
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from make_fashion_mnist_small import write_lzma_npz

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
PER_CLASS = {"train": 550, "test": 100}
FACTOR = 2  # 32×32 → 16×16


def downsample(images: np.ndarray, factor: int = FACTOR) -> np.ndarray:
    """Mean of each ``factor``×``factor`` block, rounded to uint8: (N, H, W, C) → (N, H/f, W/f, C)."""
    n, h, w, c = images.shape
    blocks = images.reshape(n, h // factor, factor, w // factor, factor, c).astype(np.float64)
    return np.rint(blocks.mean(axis=(2, 4))).astype(np.uint8)


def read_first_per_class(archive: str) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(images, labels, class × 10,000 + rank) of the first images of each class, per split."""
    found: dict[str, list[tuple[int, int, np.ndarray]]] = {"train": [], "test": []}
    with tarfile.open(archive) as tar:
        for member in tar:
            parts = Path(member.name).parts[-3:]
            if not member.isfile() or not member.name.endswith(".jpg") or parts[0] not in found:
                continue
            split, name, file = parts
            rank = int(Path(file).stem)
            if rank < PER_CLASS[split]:
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as image:
                    found[split].append((CLASSES.index(name), rank, np.asarray(image.convert("RGB"))))
    result = {}
    for split, items in found.items():
        items.sort(key=lambda item: (item[1], item[0]))  # interleave classes, as the original order does
        labels = np.array([label for label, _, _ in items], dtype=np.int64)
        index = np.array([label * 10_000 + rank for label, rank, _ in items], dtype=np.int64)
        result[split] = (np.stack([image for _, _, image in items]), labels, index)
    return result


def main(source: str) -> None:
    splits = read_first_per_class(source)
    arrays = {}
    for split, (images, labels, index) in splits.items():
        arrays[f"x_{split}"] = downsample(images)
        arrays[f"y_{split}"] = labels
        arrays[f"idx_{split}"] = index
    arrays["classes"] = np.array(CLASSES)
    target = Path(__file__).with_name("cifar10_small.npz")
    write_lzma_npz(target, arrays)
    print(f"wrote {target} ({target.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "../shared/datasets/cifar10_jpeg.tar.gz")
