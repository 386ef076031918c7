"""fastdl.data: preprocessing, batching, augmentation of image batches, and bundled data sets."""

from . import augmentation, datasets
from .augmentation import random_crop, random_flip, random_rotation
from .datasets import load_digits
from .preprocessing import MinMaxScaler, StandardScaler, batches, to_categorical, train_test_split

__all__ = [
    "to_categorical", "train_test_split", "StandardScaler", "MinMaxScaler", "batches", "random_crop",
    "random_flip", "random_rotation", "load_digits", "augmentation", "datasets",
]
