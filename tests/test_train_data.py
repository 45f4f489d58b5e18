"""Tiny datasets in the real on-disk formats for the training tests (helpers; no tests here)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dada.data.classes import CITYSCAPES_TO_16, MAPILLARY_TO_7, SYNTHIA_TO_16

HEIGHT, WIDTH = 32, 64


def _image(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=(HEIGHT, WIDTH, 3), dtype=np.uint8)


def make_synthia(root: Path, count: int = 4, seed: int = 0) -> Path:
    from dada.data.synthia import write_synthia

    rng = np.random.default_rng(seed)
    raw_ids = sorted(SYNTHIA_TO_16)
    for k in range(count):
        labels = rng.choice(raw_ids, size=(HEIGHT, WIDTH)).astype(np.uint16)
        depth = rng.uniform(1.0, 2000.0, size=(HEIGHT, WIDTH)).astype(np.float32)
        write_synthia(root, f"{k:07d}.png", _image(rng), labels, depth)
    return root


def make_cityscapes(root: Path, count: int = 4, seed: int = 1) -> Path:
    from dada.data.cityscapes import write_cityscapes

    rng = np.random.default_rng(seed)
    label_ids = sorted(CITYSCAPES_TO_16)
    for split, n in (("train", count), ("val", 2)):
        for k in range(n):
            labels = rng.choice(label_ids, size=(HEIGHT, WIDTH)).astype(np.uint8)
            write_cityscapes(root, split, "aachen", f"aachen_{k:06d}_000019", _image(rng), labels)
    return root


def make_mapillary(root: Path, count: int = 4, seed: int = 2) -> Path:
    from dada.data.mapillary import write_mapillary

    rng = np.random.default_rng(seed)
    for split, n in (("training", count), ("validation", 2)):
        for k in range(n):
            labels = rng.choice(sorted(MAPILLARY_TO_7), size=(HEIGHT, WIDTH)).astype(np.uint8)
            write_mapillary(root, split, f"key{k:04d}", _image(rng), labels)
    return root


def tiny_overrides(tmp: Path, arch: str, target: str = "cityscapes") -> list[str]:
    """Overrides that point a preset at tiny generated data in ``tmp`` (made once)."""
    source = tmp / "synthia"
    if not source.exists():
        make_synthia(source)
    target_root = tmp / target
    if not target_root.exists():
        (make_cityscapes if target == "cityscapes" else make_mapillary)(target_root)
    size = f"[{HEIGHT},{WIDTH}]"
    return [f"model.arch={arch}", f"data.source.root={source}", "data.source.split=all",
            f"data.source.size={size}", f"data.target.root={target_root}", f"data.target.size={size}",
            f"data.val.root={target_root}", f"data.val.size={size}", "data.num_workers=0",
            "train.device=cpu", "train.progress=false", f"output.root={tmp / 'runs'}",
            "model.pretrained=none"]  # random init on purpose: the paper presets ask for ImageNet weights
