"""Class sets and raw-id mapping tables: data, not code.

Everything about classes lives here: the 16-class SYNTHIA∩Cityscapes set and its 13-class mIoU* subset,
the 7-class set, the official palettes, and the tables that map each dataset's raw label ids to train ids.
Any raw id that a table does not list maps to :data:`IGNORE_INDEX`.

Sources: the official DADA/ADVENT code (``../shared/reference/official-implementation.md`` §4). The
Cityscapes → 7 table is *derived* (the official code ships none): Cityscapes categories in DADA's 7-class
order, train id = categoryId − 1; ids that Cityscapes marks ``ignoreInEval`` (parking, rail track, guard
rail, bridge, tunnel, polegroup, caravan, trailer) are ignored, as they are in the 16-class protocol.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dada.errors import DadaError

IGNORE_INDEX = 255


@dataclass(frozen=True)
class ClassSet:
    """Names and RGB palette of a set of train ids ``0 .. num_classes-1``."""

    name: str
    names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def palette_array(self) -> np.ndarray:
        """256×3 uint8 palette (zero padded, ``IGNORE_INDEX`` black), as the official PIL 'P' palette."""
        table = np.zeros((256, 3), dtype=np.uint8)
        table[: self.num_classes] = np.asarray(self.palette, dtype=np.uint8)
        return table

    def colorize(self, label: np.ndarray) -> np.ndarray:
        """H×W train ids → H×W×3 uint8 RGB with the official palette; ignore pixels are black."""
        label = np.asarray(label)
        return self.palette_array()[np.clip(label, 0, 255).astype(np.uint8)]


CLASSES_16 = ClassSet(
    name="synthia16",
    names=("road", "sidewalk", "building", "wall", "fence", "pole", "light", "sign", "vegetation", "sky",
           "person", "rider", "car", "bus", "motorcycle", "bicycle"),
    palette=((128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
             (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (70, 130, 180),
             (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 60, 100), (0, 0, 230), (119, 11, 32)),
)

#: Train ids of the 13-class subset used for mIoU*: the 16 classes without wall, fence and pole.
MIOU13_CLASSES: tuple[int, ...] = tuple(i for i in range(16) if i not in (3, 4, 5))

CLASSES_7 = ClassSet(
    name="common7",
    names=("flat", "construction", "object", "nature", "sky", "human", "vehicle"),
    palette=((128, 64, 128), (70, 70, 70), (153, 153, 153), (107, 142, 35), (70, 130, 180),
             (220, 20, 60), (0, 0, 142)),
)

#: CamVid's 11 classes (SegNet's grouping; label id 11 = void, ignored), drawn in the colours of their
#: counterparts among the 16 classes so that a 16-class prediction merged to these 11 keeps its colours.
CLASSES_CAMVID11 = ClassSet(
    name="camvid11",
    names=("sky", "building", "pole", "road", "pavement", "tree", "sign-symbol", "fence", "car", "pedestrian",
           "bicyclist"),
    palette=((70, 130, 180), (70, 70, 70), (153, 153, 153), (128, 64, 128), (244, 35, 232),
             (107, 142, 35), (220, 220, 0), (190, 153, 153), (0, 0, 142), (220, 20, 60), (119, 11, 32)),
)

CLASS_SETS = {16: CLASSES_16, 7: CLASSES_7, 11: CLASSES_CAMVID11}


def class_set(num_classes: int) -> ClassSet:
    """The class set for ``num_classes`` (16, 7, or 11 for CamVid)."""
    try:
        return CLASS_SETS[int(num_classes)]
    except KeyError:
        raise DadaError(f"num_classes={num_classes} is not supported: use 16 (SYNTHIA∩Cityscapes), 7 (flat, "
                        f"construction, object, nature, sky, human, vehicle) or 11 (CamVid)") from None


# --------------------------------------------------------------------------------------------------
# SYNTHIA-RAND-CITYSCAPES raw ids
SYNTHIA_IDS = {
    "void": 0, "sky": 1, "building": 2, "road": 3, "sidewalk": 4, "fence": 5, "vegetation": 6, "pole": 7,
    "car": 8, "traffic sign": 9, "pedestrian": 10, "bicycle": 11, "motorcycle": 12, "parking-slot": 13,
    "road-work": 14, "traffic light": 15, "terrain": 16, "rider": 17, "truck": 18, "bus": 19, "train": 20,
    "wall": 21, "lanemarking": 22,
}

SYNTHIA_TO_16 = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 1: 9, 10: 10, 17: 11, 8: 12,
                 19: 13, 12: 14, 11: 15}
SYNTHIA_TO_7 = {3: 0, 4: 0, 22: 0, 2: 1, 5: 1, 7: 2, 9: 2, 15: 2, 6: 3, 1: 4, 10: 5, 8: 6, 11: 6}

# --------------------------------------------------------------------------------------------------
# Cityscapes labelIds (cityscapesScripts labels.py)
CITYSCAPES_LABEL_IDS = {
    "unlabeled": 0, "ego vehicle": 1, "rectification border": 2, "out of roi": 3, "static": 4,
    "dynamic": 5, "ground": 6, "road": 7, "sidewalk": 8, "parking": 9, "rail track": 10, "building": 11,
    "wall": 12, "fence": 13, "guard rail": 14, "bridge": 15, "tunnel": 16, "pole": 17, "polegroup": 18,
    "traffic light": 19, "traffic sign": 20, "vegetation": 21, "terrain": 22, "sky": 23, "person": 24,
    "rider": 25, "car": 26, "truck": 27, "bus": 28, "caravan": 29, "trailer": 30, "train": 31,
    "motorcycle": 32, "bicycle": 33,
}

CITYSCAPES_TO_16 = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 23: 9, 24: 10, 25: 11,
                    26: 12, 28: 13, 32: 14, 33: 15}
# Derived (see module docstring): flat 0, construction 1, object 2, nature 3, sky 4, human 5, vehicle 6.
CITYSCAPES_TO_7 = {7: 0, 8: 0, 11: 1, 12: 1, 13: 1, 17: 2, 19: 2, 20: 2, 21: 3, 22: 3, 23: 4, 24: 5,
                   25: 5, 26: 6, 27: 6, 28: 6, 31: 6, 32: 6, 33: 6}

# --------------------------------------------------------------------------------------------------
# Mapillary Vistas (66 labels, ids 0..65; 65 = Unlabeled is the padding/background id)
MAPILLARY_NAMES = (
    "Bird", "Ground Animal", "Curb", "Fence", "Guard Rail", "Barrier", "Wall", "Bike Lane",
    "Crosswalk - Plain", "Curb Cut", "Parking", "Pedestrian Area", "Rail Track", "Road", "Service Lane",
    "Sidewalk", "Bridge", "Building", "Tunnel", "Person", "Bicyclist", "Motorcyclist", "Other Rider",
    "Lane Marking - Crosswalk", "Lane Marking - General", "Mountain", "Sand", "Sky", "Snow", "Terrain",
    "Vegetation", "Water", "Banner", "Bench", "Bike Rack", "Billboard", "Catch Basin", "CCTV Camera",
    "Fire Hydrant", "Junction Box", "Mailbox", "Manhole", "Phone Booth", "Pothole", "Street Light", "Pole",
    "Traffic Sign Frame", "Utility Pole", "Traffic Light", "Traffic Sign (Back)", "Traffic Sign (Front)",
    "Trash Can", "Bicycle", "Boat", "Bus", "Car", "Caravan", "Motorcycle", "On Rails", "Other Vehicle",
    "Trailer", "Truck", "Wheeled Slow", "Car Mount", "Ego Vehicle", "Unlabeled",
)
MAPILLARY_BACKGROUND_ID = 65
MAPILLARY_TO_7 = {
    **{i: 1 for i in (2, 3, 4, 5, 6, 16, 17, 18)},
    **{i: 0 for i in (7, 8, 9, 10, 11, 12, 13, 14, 15, 23, 24, 29)},
    **{i: 5 for i in (19, 20, 21, 22)},
    27: 4, 30: 3,
    **{i: 2 for i in range(43, 51)},
    **{i: 6 for i in range(52, 63)},
}

RAW_TO_TRAIN = {
    ("synthia", 16): SYNTHIA_TO_16,
    ("synthia", 7): SYNTHIA_TO_7,
    ("cityscapes", 16): CITYSCAPES_TO_16,
    ("cityscapes", 7): CITYSCAPES_TO_7,
    ("mapillary", 7): MAPILLARY_TO_7,
}


def mapping(dataset: str, num_classes: int) -> dict[int, int]:
    """The raw-id → train-id table of ``dataset`` for ``num_classes`` classes."""
    try:
        return RAW_TO_TRAIN[(dataset, int(num_classes))]
    except KeyError:
        known = ", ".join(f"{d}/{n}" for d, n in RAW_TO_TRAIN)
        raise DadaError(f"no class mapping for dataset {dataset!r} with num_classes={num_classes}; "
                        f"known: {known}") from None


def lookup_table(table: dict[int, int], size: int = 256) -> np.ndarray:
    """A dense uint8 lookup array of ``size`` entries; unlisted raw ids map to ``IGNORE_INDEX``."""
    lut = np.full(size, IGNORE_INDEX, dtype=np.uint8)
    for raw, train in table.items():
        lut[raw] = train
    return lut


def map_labels(raw: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """Map an integer array of raw ids to train ids (int64, ``IGNORE_INDEX`` for unlisted ids)."""
    raw = np.asarray(raw)
    if raw.size and (raw.min() < 0 or raw.max() > 65535):
        raise DadaError(f"raw label ids must lie in 0..65535, got {raw.min()}..{raw.max()}")
    lut = lookup_table(table, size=max(256, int(raw.max()) + 1 if raw.size else 256))
    return lut[raw.astype(np.int64)].astype(np.int64)
