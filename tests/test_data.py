"""Datamodules: loading, splits, normalization, augmentation, and their error messages."""

from __future__ import annotations

import importlib.util
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra.utils import instantiate
from PIL import Image

from src.data import DigitsDataModule, ImageFolderDataModule, NpzDataModule, TorchvisionDataModule
from src.data.augment import random_crop_flip

from .conftest import DATA, SHARED_DATASETS, config_options

MNIST_TINY = DATA / "mnist_tiny.npz"
CIFAR_TINY = DATA / "cifar10_tiny.npz"
TORCHVISION_SETS = ["cifar10", "cifar100", "mnist", "fashion_mnist", "svhn"]


def npz(path: str | Path = MNIST_TINY, **kwargs) -> NpzDataModule:
    defaults = {"name": "npz", "batch_size": 8, "val_size": 0.1}
    return NpzDataModule(path=str(path), **{**defaults, **kwargs})


@pytest.mark.parametrize("dataset", sorted(set(config_options("dataset")) - set(TORCHVISION_SETS)))
def test_every_local_dataset_config_loads(compose_cfg, dataset, tmp_path):
    overrides = [f"dataset={dataset}", "batch=4"]
    if dataset == "npz":
        overrides.append(f"dataset.path={MNIST_TINY}")
    if dataset in ("image_folder", "cifar10_jpeg"):  # the real CIFAR-10 tar is tested below (slow)
        folder = write_image_folder(tmp_path / "imgs")
        overrides += [f"dataset.path={folder}", f"dataset.cache_dir={tmp_path / 'c'}", "dataset.val_size=0.1"]
    module = instantiate(compose_cfg(*overrides).dataset)
    module.setup("fit")
    images, labels = next(iter(module.train_dataloader()))
    assert images.dtype == torch.uint8 and images.shape[0] == 4 and labels.shape == (4,)
    assert module.num_classes == 10


@pytest.mark.slow
@pytest.mark.skipif(not (SHARED_DATASETS / "cifar10_jpeg.tar.gz").exists(), reason="../shared/datasets is not present")
def test_cifar10_jpeg_from_shared_datasets(compose_cfg, tmp_path):
    cfg = compose_cfg(
        "dataset=cifar10_jpeg",
        f"dataset.path={SHARED_DATASETS / 'cifar10_jpeg.tar.gz'}",
        f"dataset.cache_dir={tmp_path}",
    )
    module = instantiate(cfg.dataset)
    module.setup()
    assert module.split_sizes() == {"train": 45000, "val": 5000, "test": 10000}
    assert module.input_shape == (3, 32, 32)
    assert module.classes[:3] == ["airplane", "automobile", "bird"]


def test_embedded_default_is_class_balanced_real_cifar10_at_16px(compose_cfg):
    cfg = compose_cfg()
    assert cfg.dataset.name == "cifar10_small"
    module = instantiate(cfg.dataset)
    module.setup("fit")
    assert module.input_shape == (3, 16, 16)
    assert module.split_sizes() == {"train": 5000, "val": 500, "test": 1000}
    assert module.classes[:3] == ["airplane", "automobile", "bird"]
    path = Path(module.path) if Path(module.path).is_absolute() else Path(__file__).parents[1] / module.path
    assert path.stat().st_size < 5e6
    with np.load(path) as d:
        assert np.bincount(d["y_train"]).tolist() == [550] * 10
        assert np.bincount(d["y_test"]).tolist() == [100] * 10
        # CIFAR-10's per-channel training means are about 0.49, 0.48, 0.45 (2×2 averaging keeps them)
        assert np.allclose(d["x_train"].reshape(-1, 3).mean(0) / 255, [0.49, 0.48, 0.45], atol=0.02)


def test_the_cifar10_subset_builder_averages_2x2_blocks():
    import importlib.util

    script = Path(__file__).parents[1] / "src" / "data" / "assets" / "make_cifar10_small.py"
    spec = importlib.util.spec_from_file_location("make_cifar10_small", script)
    builder = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(builder)
    block = np.arange(2 * 4 * 4 * 3, dtype=np.uint8).reshape(2, 4, 4, 3)
    expected = block.reshape(2, 2, 2, 2, 2, 3).astype(float).mean(axis=(2, 4))
    np.testing.assert_array_equal(builder.downsample(block), np.rint(expected).astype(np.uint8))


def test_the_fashion_mnist_subset_is_class_balanced_real_fashion_mnist(compose_cfg):
    cfg = compose_cfg("dataset=fashion_mnist_small")
    assert cfg.dataset.name == "fashion_mnist_small"
    module = instantiate(cfg.dataset)
    module.setup("fit")
    assert module.input_shape == (1, 28, 28)
    assert module.split_sizes() == {"train": 9000, "val": 1000, "test": 2000}
    with np.load(module.path if Path(module.path).is_absolute() else Path(__file__).parents[1] / module.path) as d:
        assert np.bincount(d["y_train"]).tolist() == [1000] * 10
        assert np.bincount(d["y_test"]).tolist() == [200] * 10
        # Fashion-MNIST's training-set mean and std are 0.2860 and 0.3530
        assert abs(d["x_train"].mean() / 255 - 0.286) < 0.01
        assert abs(d["x_train"].std() / 255 - 0.353) < 0.01


def test_validation_split_is_fixed_by_split_seed_and_disjoint():
    first, again, other = npz(split_seed=0), npz(split_seed=0), npz(split_seed=1)
    for module in (first, again, other):
        module.setup()
    val = first.splits["val"].tensors[0]
    assert torch.equal(val, again.splits["val"].tensors[0])
    assert not torch.equal(val, other.splits["val"].tensors[0])
    assert first.split_sizes() == {"train": 900, "val": 100, "test": 200}
    train_rows = {bytes(x.numpy()) for x in first.splits["train"].tensors[0]}
    assert not train_rows & {bytes(x.numpy()) for x in val}


def test_train_size_keeps_a_subset_and_batches_are_full():
    module = npz(train_size=50, batch_size=16, val_size=20)
    module.setup()
    assert module.split_sizes()["train"] == 50
    batches = list(module.train_dataloader())
    assert [len(b[1]) for b in batches] == [16, 16, 16]  # the partial batch of 2 is dropped


def test_normalization_uses_training_mean_and_std():
    module = npz()
    module.setup()
    train = module.splits["train"].tensors[0].float() / 255
    assert module.mean.flatten().item() == pytest.approx(train.mean().item(), abs=1e-4)
    images, _ = module.on_after_batch_transfer([module.splits["train"].tensors[0], None], 0)
    assert images.mean().item() == pytest.approx(0.0, abs=1e-4)
    assert images.std().item() == pytest.approx(1.0, abs=1e-3)


def test_crop_flip_moves_content_by_at_most_the_padding_and_flips_half():
    torch.manual_seed(0)
    images = torch.rand(4000, 1, 6, 6) + 1.0  # strictly positive: padding shows up as zeros
    out = random_crop_flip(images, pad=2)
    assert out.shape == images.shape
    zero_rows = (out == 0).all(dim=3).sum(dim=(1, 2))
    assert zero_rows.max() <= 2
    # a horizontal flip of an image that is left-heavy makes it right-heavy: about half are flipped
    ramp = torch.linspace(2, 1, 6).expand(4000, 1, 6, 6)
    flipped = random_crop_flip(ramp.clone(), pad=0)
    share = (flipped[..., 0] < flipped[..., -1]).float().mean().item()
    assert 0.45 < share < 0.55
    # every one of the (2·pad+1)² offsets is used about equally
    marker = torch.zeros(4000, 1, 6, 6)
    marker[:, :, 2, 2] = 1
    moved = random_crop_flip(marker, pad=2).flatten(1).argmax(dim=1)
    counts = torch.bincount(moved, minlength=36).float()
    assert (counts > 0).sum() >= 25 - 5  # flips mirror columns: most of the 5×5 offsets are reached


def test_augmentation_runs_only_in_training():
    module = npz(augment="crop_flip")
    module.setup()

    class Stage:
        training = False

    module.trainer = Stage()  # type: ignore[assignment]
    batch = [module.splits["test"].tensors[0][:8], None]
    a, _ = module.on_after_batch_transfer(list(batch), 0)
    b, _ = module.on_after_batch_transfer(list(batch), 0)
    assert torch.equal(a, b)
    Stage.training = True
    c, _ = module.on_after_batch_transfer(list(batch), 0)
    assert not torch.equal(a, c)


def test_digits_is_stratified_8x8():
    module = DigitsDataModule(name="digits", batch_size=8, val_size=0.1)
    module.setup()
    assert module.input_shape == (1, 8, 8)
    assert module.split_sizes()["test"] == 360
    assert torch.bincount(module.splits["test"].tensors[1]).min() >= 35


def write_image_folder(root: Path, classes: int = 10, per_class: int = 6, split_test: int = 2) -> Path:
    """A real image folder built from the vendored tiny CIFAR-10 (PNG, lossless)."""
    with np.load(CIFAR_TINY) as d:
        x, y = d["x_train"], d["y_train"]
    for c in range(classes):
        for i, image in enumerate(x[y == c][:per_class]):
            split = "test" if i < split_test else "train"
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image).save(folder / f"{i:04d}.png")
    return root


@pytest.mark.parametrize("archive", [False, True])
def test_image_folder_decodes_directory_or_tar_and_caches(tmp_path, archive):
    folder = write_image_folder(tmp_path / "cifar")
    source = folder
    if archive:
        source = tmp_path / "cifar.tar.gz"
        with tarfile.open(source, "w:gz") as tar:
            tar.add(folder / "train", arcname="train")
            tar.add(folder / "test", arcname="test")
    module = ImageFolderDataModule(
        path=str(source), cache_dir=str(tmp_path / "cache"), name="f", batch_size=4, val_size=4
    )
    arrays = module.load_arrays()
    assert arrays.x_train.shape == (40, 32, 32, 3) and arrays.x_test.shape == (20, 32, 32, 3)
    assert arrays.classes == [f"class{c}" for c in range(10)]
    with np.load(CIFAR_TINY) as d:  # lossless: pixels are the originals
        assert np.array_equal(arrays.x_test[0], d["x_train"][d["y_train"] == 0][0])
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    cached = module.load_arrays()
    assert np.array_equal(cached.x_train, arrays.x_train) and cached.classes == arrays.classes


def test_missing_files_say_where_they_looked(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"dataset\.path=nowhere\.npz: not found \(looked in .*nowhere\.npz"):
        npz("nowhere.npz").setup()


def test_bad_npz_contents_fail_clearly(tmp_path):
    np.savez(tmp_path / "a.npz", x_train=np.zeros((4, 8, 8), np.uint8), y_train=np.zeros(4, np.int64))
    with pytest.raises(ValueError, match=r"missing keys \['x_test', 'y_test'\]"):
        npz(tmp_path / "a.npz").setup()
    floats = {
        "x_train": np.zeros((4, 8, 8)),
        "y_train": np.arange(4),
        "x_test": np.zeros((2, 8, 8)),
        "y_test": np.arange(2),
    }
    np.savez(tmp_path / "b.npz", **floats)
    with pytest.raises(ValueError, match=r"x_train has dtype float64"):
        npz(tmp_path / "b.npz").setup()


def test_batch_larger_than_training_split_fails():
    with pytest.raises(ValueError, match=r"batch=5000 is larger than the training split \(900 images\)"):
        npz(batch_size=5000).setup()


@pytest.mark.skipif(importlib.util.find_spec("torchvision") is not None, reason="torchvision is installed")
@pytest.mark.parametrize("dataset", TORCHVISION_SETS)
def test_torchvision_datasets_name_the_extra_when_missing(compose_cfg, dataset):
    module = instantiate(compose_cfg(f"dataset={dataset}").dataset)
    with pytest.raises(ModuleNotFoundError, match=r"needs torchvision.*pip install -e '\.\[vision\]'"):
        module.setup()


def write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format of the original MNIST files (what torchvision reads)."""
    dtype_code = 0x08 if array.dtype == np.uint8 else 0x0C
    header = bytes([0, 0, dtype_code, array.ndim]) + b"".join(int(n).to_bytes(4, "big") for n in array.shape)
    path.write_bytes(header + array.astype(">u1" if dtype_code == 0x08 else ">i4").tobytes())


def test_torchvision_mnist_reads_local_files_offline(tmp_path):
    pytest.importorskip("torchvision")
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    with np.load(MNIST_TINY) as d:
        write_idx(raw / "train-images-idx3-ubyte", d["x_train"])
        write_idx(raw / "train-labels-idx1-ubyte", d["y_train"].astype(np.uint8))
        write_idx(raw / "t10k-images-idx3-ubyte", d["x_test"])
        write_idx(raw / "t10k-labels-idx1-ubyte", d["y_test"].astype(np.uint8))
    module = TorchvisionDataModule("mnist", root=str(tmp_path), download=False, name="mnist", batch_size=8)
    module.setup()
    assert module.split_sizes()["test"] == 200 and module.input_shape == (1, 28, 28)


@pytest.mark.skipif(not (SHARED_DATASETS / "mnist.npz").exists(), reason="../shared/datasets is not present")
def test_full_mnist_from_shared_datasets():
    module = npz(SHARED_DATASETS / "mnist.npz", val_size=5000)
    module.setup()
    assert module.split_sizes() == {"train": 55000, "val": 5000, "test": 10000}
    # MNIST's training mean and std are 0.1307 and 0.3081 (on the 55,000 kept here, nearly so)
    assert module.mean.item() == pytest.approx(0.1307, abs=0.002)
    assert module.std.item() == pytest.approx(0.3081, abs=0.002)


def test_the_crop_padding_options_fill_the_border_as_named_and_draw_the_same_crops():
    """crop_flip pads with zeros before normalization, crop_flip_mean with the dataset mean (zero after
    normalization), crop_flip_reflect with the mirrored image; the offsets and flips are the same draws."""
    from src.data.augment import AUGMENTATIONS

    images = torch.rand(64, 3, 8, 8) * 0.5 + 0.5  # in [0.5, 1]: a zero border shows up as 0
    mean = torch.tensor([0.2, 0.4, 0.6]).view(1, 3, 1, 1)
    outputs = {}
    for name in ("crop_flip", "crop_flip_mean", "crop_flip_reflect"):
        torch.manual_seed(3)
        outputs[name] = AUGMENTATIONS[name](images, mean=mean)
    zero_border = outputs["crop_flip"] == 0
    assert zero_border.any()
    filled = outputs["crop_flip_mean"][zero_border.expand_as(outputs["crop_flip_mean"])]
    expected = mean.expand_as(images)[zero_border.expand_as(images)]
    assert torch.allclose(filled, expected)
    assert (outputs["crop_flip_reflect"] >= 0.5).all()  # mirrored pixels only: no constant band
    # wherever the zero-padded crop shows the image, all three agree: the same offset and flip
    inside = ~zero_border.any(dim=1, keepdim=True).expand_as(images)
    assert torch.equal(outputs["crop_flip_reflect"][inside], outputs["crop_flip"][inside])
    assert torch.allclose(outputs["crop_flip_mean"][inside], outputs["crop_flip"][inside])  # (x − m) + m


def test_an_unknown_padding_is_refused_with_the_choices():
    from src.data.augment import random_crop_flip

    with pytest.raises(ValueError, match="padding='black' is invalid: choose one of"):
        random_crop_flip(torch.zeros(1, 1, 4, 4), padding="black")
    with pytest.raises(ValueError, match=r"dataset\.augment='crop_flip_black' is invalid"):
        npz(augment="crop_flip_black")
