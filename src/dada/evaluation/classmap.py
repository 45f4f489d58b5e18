"""Scoring a model on a target labelled with another class set: the model's prediction is merged.

A model trained on a synthetic source predicts the source's classes (the 16 SYNTHIA∩Cityscapes classes);
a real target may be labelled with fewer, coarser ones (CamVid's 11). Each pixel's prediction (the argmax
over the model's classes) is replaced by the target class its class belongs to, then scored against the
target's labels as usual (confusion matrix, per-class IoU, mIoU over the target's classes). The mapping
is a property of the pair of class sets, written once here (:data:`CLASS_MAPS`); the evaluator picks it
from the dataset's ``label_class_set`` whenever the model's class count differs from the labels'.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from dada.data.classes import CLASS_SETS, CLASSES_16, CLASSES_CAMVID11, ClassSet
from dada.errors import DadaError


@dataclass(frozen=True)
class ClassMap:
    """``table[i]`` is the target class of the model's class ``i`` (every model class has one)."""

    source: ClassSet
    target: ClassSet
    table: tuple[int, ...]

    def __post_init__(self):
        if len(self.table) != self.source.num_classes or not all(
                0 <= t < self.target.num_classes for t in self.table):
            raise DadaError(f"class map {self.name}: needs one target class in "
                            f"0..{self.target.num_classes - 1} for each of the {self.source.num_classes} "
                            f"source classes")

    @property
    def name(self) -> str:
        return f"{self.source.name}->{self.target.name}"

    @cached_property
    def _lut(self) -> torch.Tensor:
        return torch.tensor(self.table, dtype=torch.long)

    def apply(self, pred: torch.Tensor) -> torch.Tensor:
        """A map of the model's class ids → the same map in the target's ids (any shape, any device)."""
        return self._lut.to(pred.device)[pred.long()]

    def groups(self) -> dict[str, list[str]]:
        """Target class name → the model classes merged into it (in the model's order)."""
        return {name: [self.source.names[i] for i, t in enumerate(self.table) if t == target]
                for target, name in enumerate(self.target.names)}

    def describe(self) -> dict:
        """What results.json records of the merge."""
        return {"name": self.name, "model_classes": self.source.num_classes,
                "label_classes": self.target.num_classes, "merged": self.groups(),
                "rule": "argmax over the model's classes, then each class replaced by the target class it "
                        "belongs to; IoU and mIoU over the target's classes"}


def _table(source: ClassSet, target: ClassSet, groups: dict[str, tuple[str, ...]]) -> tuple[int, ...]:
    owner = {member: target.names.index(name) for name, members in groups.items() for member in members}
    missing = [n for n in source.names if n not in owner]
    if missing:
        raise DadaError(f"class map {source.name}->{target.name} leaves {missing} without a target class")
    return tuple(owner[n] for n in source.names)


#: SYNTHIA∩Cityscapes (16) → CamVid (11), as CamVid's own grouping of its 32 classes defines the 11
#: (the data's README): building takes wall; sign-symbol takes traffic lights and signs; car takes bus;
#: bicyclist (rider and bicycle together) takes rider, motorcycle and bicycle.
SYNTHIA16_TO_CAMVID11 = ClassMap(CLASSES_16, CLASSES_CAMVID11, _table(CLASSES_16, CLASSES_CAMVID11, {
    "sky": ("sky",), "building": ("building", "wall"), "pole": ("pole",), "road": ("road",),
    "pavement": ("sidewalk",), "tree": ("vegetation",), "sign-symbol": ("light", "sign"), "fence": ("fence",),
    "car": ("car", "bus"), "pedestrian": ("person",), "bicyclist": ("rider", "motorcycle", "bicycle")}))

#: (model class set, label class set) → its map
CLASS_MAPS: dict[tuple[str, str], ClassMap] = {
    (m.source.name, m.target.name): m for m in (SYNTHIA16_TO_CAMVID11,)}


def class_map(model_classes: int, labels: ClassSet) -> ClassMap | None:
    """The map that scores a ``model_classes``-class model on labels of class set ``labels``; None when
    they are the same set; DadaError when no map is defined."""
    if model_classes == labels.num_classes:
        return None
    model_set = CLASS_SETS.get(int(model_classes))
    found = CLASS_MAPS.get((model_set.name, labels.name)) if model_set is not None else None
    if found is None:
        known = ", ".join(f"{a} -> {b}" for a, b in CLASS_MAPS)
        raise DadaError(f"the model predicts {model_classes} classes but the labels are {labels.name} "
                        f"({labels.num_classes} classes) and no class map joins them (known: {known}); "
                        f"evaluate it on a {model_classes}-class dataset")
    return found


def dataset_class_map(dataset, model_classes: int) -> tuple[ClassMap | None, ClassSet | None]:
    """``(map, label class set)`` of an evaluation dataset that declares its labels' class set
    (``label_class_set``, e.g. CamVid); ``(None, None)`` for datasets whose labels follow the model's."""
    labels = getattr(dataset, "label_class_set", None)
    if labels is None:
        return None, None
    return class_map(model_classes, labels), labels


def markdown(described: dict) -> list[str]:
    """results.md lines of a recorded merge (:meth:`ClassMap.describe`)."""
    merged = "; ".join(f"{target} ← {' + '.join(members)}" for target, members in described["merged"].items())
    return [f"The model predicts {described['model_classes']} classes; the labels have "
            f"{described['label_classes']}. Predictions merged ({described['name']}): {merged}. "
            f"Rule: {described['rule']}."]


__all__ = ["CLASS_MAPS", "SYNTHIA16_TO_CAMVID11", "ClassMap", "class_map", "dataset_class_map", "markdown"]
