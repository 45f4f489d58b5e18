"""Label-id tables of the built-in benchmark's raw generator ids (shared by the writer and the
fingerprint, so neither imports the other for them)."""

from __future__ import annotations

import numpy as np

from dada.benchmark.world import EGO
from dada.data.classes import CITYSCAPES_LABEL_IDS, SYNTHIA_IDS, SYNTHIA_TO_16


def _synthia_to_cityscapes() -> np.ndarray:
    """256-entry table: raw SYNTHIA id → Cityscapes labelId (lane markings are road in Cityscapes)."""
    names = {
        "pedestrian": "person",
        "traffic sign": "traffic sign",
        "traffic light": "traffic light",
        "lanemarking": "road",
        "void": "unlabeled",
        "parking-slot": "parking",
        "road-work": "unlabeled",
    }
    lut = np.zeros(256, np.uint8)
    for name, raw in SYNTHIA_IDS.items():
        lut[raw] = CITYSCAPES_LABEL_IDS[names.get(name, name)]
    lut[EGO] = CITYSCAPES_LABEL_IDS["ego vehicle"]
    return lut


SYN_TO_CS = _synthia_to_cityscapes()
SYN_TO_TRAIN = np.full(256, 255, np.uint8)
for _raw, _train in SYNTHIA_TO_16.items():
    SYN_TO_TRAIN[_raw] = _train
