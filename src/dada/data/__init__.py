"""Datasets in their on-disk formats (one module per dataset: layout, reader, writer), class sets,
transforms and the dataset doctor. The built-in benchmark generator is :mod:`dada.benchmark`."""

from dada.data.classes import (
    CLASSES_7,
    CLASSES_16,
    IGNORE_INDEX,
    MIOU13_CLASSES,
    ClassSet,
    class_set,
)
from dada.data.datasets import DATASET_NAMES, build_dataset
from dada.data.transforms import denormalize, preprocess_image

__all__ = ["CLASSES_7", "CLASSES_16", "IGNORE_INDEX", "MIOU13_CLASSES", "ClassSet", "class_set",
           "DATASET_NAMES", "build_dataset", "denormalize", "preprocess_image"]
