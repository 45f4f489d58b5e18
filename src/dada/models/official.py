"""Official weights: convert state dicts of the released DADA / ADVENT code to ours, and back.

Our modules keep the official attribute names (reference §1.6); the segmenter nests the DeepLab ResNet
under ``backbone.``, so ``conv1.weight`` in an official file is ``backbone.conv1.weight`` here, while the
heads (``layer6``, ``enc4_*``, ``dec4``) keep their names. Every conversion compares the result with the
exact key set and shapes of the target model and raises :class:`~dada.DadaError` naming the first
offending keys. Nothing is ever loaded partially.

Kinds:

``segmenter``
    DADA checkpoints (``synthia2cityscapes_dada.pth``, …: 640 keys for C=16) and ADVENT DeepLab-v2
    checkpoints (no depth block). A ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix
    is stripped. ``layer5.*`` keys (the multi-level auxiliary classifier on layer3, off in DADA) are
    dropped with a warning: the auxiliary head is not part of our model. Keys already in our layout
    (``backbone.*``) are accepted as they are.
``discriminator``
    ``model_*_D_main.pth``: ``nn.Sequential`` keys ``0, 2, 4, 6, 8``.
``imagenet`` / ``torchvision``
    ``DeepLab_resnet_pretrained_imagenet.pth`` or a torchvision-layout ResNet: converted by the ResNet
    backbone's own :func:`~dada.models.backbones.resnet.convert_pretrained`; the result has the
    backbone's keys (load it into ``model.backbone``).

``export`` is the inverse for ``segmenter`` and ``discriminator`` (official key names and shapes, so
models trained here run in the official code) and for ``imagenet`` (the ``Scale.`` prefix).
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping

import torch

from dada.errors import DadaError
from dada.models.backbones import resnet
from dada.models.discriminator import Discriminator
from dada.models.heads import DEPTH_WIDTHS, depth_block_widths
from dada.models.segmenter import Segmenter, build_segmenter
from dada.models.weights import SHOW_KEYS, as_state_dict, check_layout, layout, strip_wrapper_prefixes

KINDS = ("segmenter", "discriminator", "imagenet", "torchvision")
BACKBONE = "backbone."
#: first components of the segmenter keys that are not the backbone's
HEAD_ROOTS = ("layer6", "layer5", "enc4_1", "enc4_2", "enc4_3", "dec4")

__all__ = ["KINDS", "as_state_dict", "convert", "export", "infer_spec", "strip_wrapper_prefixes",
           "to_official_keys", "to_our_keys"]


def to_our_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Official segmenter keys (also those of checkpoints written before the backbone was a separate
    module, format ``dada-seg/1``) → ours: backbone keys gain ``backbone.``. Idempotent."""
    return {k if k.startswith(BACKBONE) or k.split(".")[0] in HEAD_ROOTS else BACKBONE + k: v
            for k, v in state_dict.items()}


def to_official_keys(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Our segmenter keys → the official ones (``backbone.`` dropped)."""
    return {k.removeprefix(BACKBONE): v for k, v in state_dict.items()}


def infer_spec(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """:func:`build_segmenter` keyword arguments read from a segmenter state dict (official or ours).

    num_classes from ``layer6.conv2d_list.0.weight``; depth head from ``enc4_1.weight``; feature fusion
    from ``dec4.weight``; depth widths from the encoder shapes. An encoder with a decoder is read as the
    official DADA model (depth_head=True, feature_fusion=True).
    """
    sd = to_official_keys(strip_wrapper_prefixes(state_dict))
    arch = resnet.infer_arch(sd)
    if "layer6.conv2d_list.0.weight" not in sd:
        raise DadaError("no 'layer6.conv2d_list.0.weight' key: not a DeepLab-v2 segmenter state dict "
                        "(an ImageNet backbone? use kind 'imagenet' or 'torchvision')")
    num_classes = sd["layer6.conv2d_list.0.weight"].shape[0]
    has_encoder = "enc4_1.weight" in sd
    fusion = "dec4.weight" in sd
    widths = "official"
    if has_encoder:
        found = tuple(sd[f"enc4_{i}.weight"].shape[0] for i in (1, 2, 3) if f"enc4_{i}.weight" in sd)
        channels = resnet.ARCHS[arch].out_channels
        matches = [w for w in DEPTH_WIDTHS if depth_block_widths(channels, w) == found]
        if not matches:
            raise DadaError(f"depth block widths {list(found)} match neither the official nor the paper "
                            f"widths for {arch}")
        widths = matches[0]
    return {"arch": arch, "num_classes": int(num_classes), "depth_head": has_encoder,
            "feature_fusion": fusion, "bn_mode": "train", "depth_widths": widths}


def _meta_segmenter(spec: dict) -> Segmenter:
    with torch.device("meta"):
        return build_segmenter(**spec)


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise DadaError(f"unknown weight kind {kind!r}; choose one of {KINDS}")


def convert(state_dict: Mapping[str, torch.Tensor], kind: str, *,
            model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """An official state dict of ``kind`` → a state dict for our modules, checked key by key.

    Checked against ``model`` when given, else against the model the state dict describes. ``segmenter``
    and ``discriminator`` give complete state dicts (``model.load_state_dict(sd)``); ``imagenet`` and
    ``torchvision`` give the backbone's keys (``model.backbone.load_state_dict(sd)``; ``model`` may be
    the segmenter or its backbone).
    """
    _check_kind(kind)
    sd = strip_wrapper_prefixes(as_state_dict(state_dict, kind))
    if kind == "segmenter":
        aux = [k for k in sd if k.startswith("layer5.")]
        if aux:
            warnings.warn(f"dropping {len(aux)} 'layer5.*' keys: the multi-level auxiliary classifier on "
                          "layer3 is not part of this model (DADA does not use it)", stacklevel=2)
            sd = {k: v for k, v in sd.items() if not k.startswith("layer5.")}
        expected = layout(model) if model is not None else layout(_meta_segmenter(infer_spec(sd)))
        # checked under the official names (what an official file's user knows), loaded under ours
        checked = check_layout(to_official_keys(sd), to_official_keys(expected), "the segmenter")
        return to_our_keys(checked)
    if kind == "discriminator":
        if model is None:
            if "0.weight" not in sd:
                raise DadaError(f"no '0.weight' key: not a discriminator state dict (first keys: "
                                f"{list(sd)[:SHOW_KEYS]})")
            out_ch, in_ch = sd["0.weight"].shape[:2]
            with torch.device("meta"):
                model = Discriminator(int(in_ch), int(out_ch))
        return check_layout(sd, layout(model), "the discriminator")
    backbone = model.backbone if isinstance(model, Segmenter) else model
    if backbone is not None and not isinstance(backbone, resnet.DeepLabResNet):
        raise DadaError(f"kind {kind!r} holds DeepLab ResNet weights; this model's backbone is a "
                        f"{type(backbone).__name__}")
    return resnet.convert_pretrained(sd, kind, model=backbone)


def export(state_dict: Mapping[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """Our state dict → the official layout of ``kind`` (``segmenter``, ``discriminator`` or ``imagenet``).

    The segmenter export of a ResNet-101 DADA model has exactly the 640 official keys and shapes and
    loads with the official strict ``load_state_dict``; the ``imagenet`` export (of a segmenter's or a
    backbone's state dict) prefixes the backbone keys with ``Scale.`` (the official ``train.py`` reads it
    when the file name contains ``DeepLab_resnet_pretrained_imagenet``).
    """
    _check_kind(kind)
    if kind == "torchvision":
        raise DadaError("export to the torchvision layout is not supported (its bottleneck stride sits on "
                        "the 3×3 conv); export kind 'segmenter' or 'imagenet' instead")
    sd = strip_wrapper_prefixes(as_state_dict(state_dict, kind))
    if kind == "segmenter":
        official = to_official_keys(sd)
        expected = to_official_keys(layout(_meta_segmenter(infer_spec(official))))
        checked = check_layout(official, expected, "the segmenter")
        return {**{k: checked[k] for k in official}, **checked}  # the caller's key order
    if kind == "discriminator":
        return convert(sd, "discriminator")
    backbone = {k: v for k, v in to_official_keys(sd).items() if k.split(".")[0] not in HEAD_ROOTS}
    return resnet.export_imagenet(backbone)
