"""The dataset factory: a name (``synthia``, ``cityscapes``, ``mapillary``, ``camvid``, ``folder``) → its
class, each defined with its layout, reader and writer in its own module."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dada.data.base import SegmentationDataset
from dada.data.camvid import CamVidDataset
from dada.data.cityscapes import CityscapesDataset
from dada.data.folder import FolderDataset
from dada.data.mapillary import MapillaryDataset
from dada.data.synthia import SynthiaDataset
from dada.errors import DadaError

DATASETS: dict[str, type[SegmentationDataset]] = {
    "synthia": SynthiaDataset, "cityscapes": CityscapesDataset, "mapillary": MapillaryDataset,
    "camvid": CamVidDataset, "folder": FolderDataset}
DATASET_NAMES = tuple(DATASETS)


def dataset_class(name: str) -> type[SegmentationDataset]:
    try:
        return DATASETS[str(name).lower()]
    except KeyError:
        raise DadaError(f"unknown dataset {name!r}: use one of {', '.join(DATASET_NAMES)}") from None


def build_dataset(name: str, root: str | os.PathLike, split: str, num_classes: int, size=None,
                  depth: bool = False, *, preprocess: str = "caffe", labels: bool = True,
                  label_size: str = "input", fraction: float = 1.0, seed: int = 0,
                  augment: Mapping[str, Any] | None = None, list_file: str | os.PathLike | None = None,
                  spec: str | os.PathLike | Mapping | None = None) -> SegmentationDataset:
    """A dataset of ``name`` (synthia | cityscapes | mapillary | camvid | folder) read from ``root``.

    ``size`` (H, W) resizes images (None keeps the native size; Mapillary letterboxes into it, default
    768×1024). ``label_size='input'`` resizes labels (nearest) to the image size, ``'native'`` keeps the
    file resolution (evaluation). ``depth=True`` adds ``depth``: inverse depth 65536/(raw+1) for SYNTHIA
    and folder sources, disparity (p−1)/256 with NaN where invalid for Cityscapes. ``fraction`` keeps a
    seeded subset. ``augment`` (``{"scale": [lo, hi], "crop": [H, W], "flip": True}``) is off by default,
    as in the paper. ``list_file`` overrides the split's file list; ``spec`` is the folder dataset's YAML
    (default ``ROOT/dataset.yaml``).
    """
    cls = dataset_class(name)
    kwargs = dict(preprocess=preprocess, labels=labels, label_size=label_size, fraction=fraction, seed=seed,
                  augment=augment, list_file=list_file)
    if cls is FolderDataset:
        return cls(root, split, num_classes, size, depth, spec=spec, **kwargs)
    if spec is not None:
        raise DadaError(f"spec= is for the 'folder' dataset only, not {name!r}")
    return cls(root, split, num_classes, size, depth, **kwargs)
