"""What input a trained model expects: its preprocessing, input size and letterboxing, read from its
checkpoint's config (shared by ``dada predict``, ``dada export`` and evaluation)."""

from __future__ import annotations

#: Official test input size (H, W) for Cityscapes, used for official state dicts (no config inside).
OFFICIAL_INPUT_SIZE = (512, 1024)
#: The official Mapillary canvas (H, W) into which images are letterboxed.
MAPILLARY_CANVAS = (768, 1024)


def input_settings(info: dict) -> dict:
    """Preprocessing and input size of a loaded checkpoint: from its config (``data.preprocess``,
    ``data.val.size``, else ``data.target.size``; letterboxed when that dataset is Mapillary, default
    768×1024), or the official defaults (caffe, 512×1024)."""
    config = info.get("config") or {}
    data = config.get("data") or {}
    size, letterbox = OFFICIAL_INPUT_SIZE, False
    for part in ("val", "target"):
        part_cfg = data.get(part) or {}
        if "size" in part_cfg:
            size = part_cfg["size"]
            letterbox = part_cfg.get("name") == "mapillary"
            if letterbox and size is None:
                size = MAPILLARY_CANVAS
            break
    return {"preprocess": data.get("preprocess", "caffe"),
            "size": tuple(int(s) for s in size) if size is not None else None,
            "letterbox": letterbox, "num_classes": int(info["model_spec"]["num_classes"])}
