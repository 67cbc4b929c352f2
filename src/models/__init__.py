"""Image classifiers that take their norm as a factory and their shapes from the dataset.

Every model has the signature ``Model(input_shape, num_classes, norm, **hyperparameters)`` where
``input_shape`` is (C, H, W) and ``norm`` is a :class:`src.norms.Normalization`.
"""

from src.models.resnet import CifarResNet
from src.models.small_cnn import SmallCNN

__all__ = ["CifarResNet", "SmallCNN"]
