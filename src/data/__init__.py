"""LightningDataModules that hold whole image datasets in memory as uint8 arrays.

Each dataset module only says how to load its arrays (:meth:`ArrayDataModule.load_arrays`); the base
class does the validation split, the training subset, per-channel normalization and augmentation.
"""

from src.data.arrays import ArrayDataModule, ImageArrays
from src.data.digits import DigitsDataModule
from src.data.image_folder import ImageFolderDataModule
from src.data.npz import NpzDataModule
from src.data.torchvision_sets import TorchvisionDataModule

__all__ = [
    "ArrayDataModule",
    "DigitsDataModule",
    "ImageArrays",
    "ImageFolderDataModule",
    "NpzDataModule",
    "TorchvisionDataModule",
]
