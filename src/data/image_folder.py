"""Image-folder datasets: ``train/<class>/*.jpg|png`` and ``test/<class>/*``, as a directory or a tar."""

from __future__ import annotations

import hashlib
import io
import logging
import os
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from src.data.arrays import ArrayDataModule, ImageArrays
from src.data.paths import find_file

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")
SPLITS = ("train", "test")


def iter_image_files(root: Path) -> Iterator[tuple[str, str, bytes]]:
    """(split, class, encoded bytes) for every image in a directory or a .tar/.tar.gz archive."""
    if root.is_dir():
        for file in sorted(root.rglob("*")):
            parts = file.relative_to(root).parts
            if file.is_file() and file.suffix.lower() in IMAGE_SUFFIXES and len(parts) >= 3:
                yield parts[-3], parts[-2], file.read_bytes()
        return
    with tarfile.open(root) as archive:
        for member in archive:
            parts = Path(member.name).parts
            if member.isfile() and Path(member.name).suffix.lower() in IMAGE_SUFFIXES and len(parts) >= 3:
                handle = archive.extractfile(member)
                if handle is not None:
                    yield parts[-3], parts[-2], handle.read()


def decode_image_folder(root: Path) -> ImageArrays:
    """Decode every image once; class indices follow the sorted class folder names of ``train/``."""
    from PIL import Image

    images: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    names: dict[str, list[str]] = {split: [] for split in SPLITS}
    mode = None
    for split, class_name, payload in iter_image_files(root):
        if split not in SPLITS:
            continue
        with Image.open(io.BytesIO(payload)) as image:
            if mode is None:
                mode = "L" if image.mode in ("L", "1", "I;16") else "RGB"
            images[split].append(np.asarray(image.convert(mode)))
        names[split].append(class_name)
    for split in SPLITS:
        if not images[split]:
            raise ValueError(f"dataset.path={root}: no images under {split}/<class>/ (jpg or png)")
    classes = sorted(set(names["train"]))
    if len(classes) < 2:
        raise ValueError(f"dataset.path={root}: train/ has a single class ({classes}); a classifier needs two or more")
    unknown = sorted(set(names["test"]) - set(classes))
    if unknown:
        raise ValueError(f"dataset.path={root}: test/ has classes that train/ lacks: {unknown}")
    shapes = {img.shape for split in SPLITS for img in images[split]}
    if len(shapes) != 1:
        raise ValueError(f"dataset.path={root}: images have different sizes {sorted(shapes)[:4]}; resize them first")
    index = {name: i for i, name in enumerate(classes)}

    def stack(split: str) -> tuple[np.ndarray, np.ndarray]:
        return np.stack(images[split]), np.array([index[n] for n in names[split]], dtype=np.int64)

    (x_train, y_train), (x_test, y_test) = stack("train"), stack("test")
    return ImageArrays(x_train, y_train, x_test, y_test, classes=classes)


class ImageFolderDataModule(ArrayDataModule):
    """Images laid out ``{train,test}/<class>/<file>`` in a directory or ``.tar``/``.tar.gz``.

    Decoding happens once; the arrays are cached as ``.npz`` in ``cache_dir`` under a key made of the
    source's absolute path, size and modification time, so a changed source is decoded again.
    """

    def __init__(self, path: str, cache_dir: str | None = "data/cache", **kwargs: Any):
        super().__init__(**kwargs)
        self.path = path
        self.cache_dir = cache_dir

    def _cache_file(self, source: Path) -> Path | None:
        if not self.cache_dir:
            return None
        stat = source.stat()
        key = hashlib.sha256(f"{source}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
        return Path(self.cache_dir) / f"{source.name.split('.')[0]}-{key}.npz"

    def load_arrays(self) -> ImageArrays:
        source = find_file(
            self.path,
            "dataset.path",
            "Give dataset.path=<dir or .tar.gz> laid out train/<class>/*.jpg and test/<class>/*.jpg.",
        )
        cache = self._cache_file(source)
        if cache is None:
            return decode_image_folder(source)
        cache.parent.mkdir(parents=True, exist_ok=True)
        # parallel jobs of one sweep wait here for the first to decode, then all read its cache
        with FileLock(cache.with_suffix(".lock")):
            if cache.exists():
                with np.load(cache, allow_pickle=False) as data:
                    return ImageArrays(
                        data["x_train"],
                        data["y_train"],
                        data["x_test"],
                        data["y_test"],
                        classes=[str(c) for c in data["classes"]],
                    )
            log.info("decoding images from %s (once; cached in %s)", source, cache)
            arrays = decode_image_folder(source)
            partial = cache.with_suffix(f".{os.getpid()}.tmp.npz")
            np.savez(
                partial,
                x_train=arrays.x_train,
                y_train=arrays.y_train,
                x_test=arrays.x_test,
                y_test=arrays.y_test,
                classes=np.array(arrays.classes),
            )
            os.replace(partial, cache)
            return arrays
