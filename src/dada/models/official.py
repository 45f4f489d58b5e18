"""Official weights: convert state dicts of the released DADA / ADVENT code to ours, and back.

Our modules use the official attribute names (reference §1.6), so the segmenter and discriminator maps
are identities on names; what this module adds is the **checking**: every conversion compares the
result with the exact key set and shapes of the target model and raises :class:`~dada.DadaError` naming
the first offending keys. Nothing is ever loaded partially.

Kinds:

``segmenter``
    DADA checkpoints (``synthia2cityscapes_dada.pth``, …: 640 keys for C=16) and ADVENT DeepLab-v2
    checkpoints (no depth block). A ``module.`` (DataParallel) or ``_orig_mod.`` (torch.compile) prefix
    is stripped. ``layer5.*`` keys (the multi-level auxiliary classifier on layer3, off in DADA) are
    dropped with a warning: the auxiliary head is not part of our model.
``discriminator``
    ``model_*_D_main.pth``: ``nn.Sequential`` keys ``0, 2, 4, 6, 8``.
``imagenet``
    ``DeepLab_resnet_pretrained_imagenet.pth``, done as the official ``train.py``: a key whose second
    component is ``layer5`` is skipped, the first component (a wrapper prefix, probably ``Scale``) is
    stripped. The result is a backbone-only state dict.
``torchvision``
    A torchvision-layout ResNet-50/101 ImageNet state dict: same names as ours, ``fc.*`` dropped.
    torchvision puts a bottleneck's stride on its 3×3 conv, we (Caffe style) on the first 1×1 conv: the
    shapes agree and the weights load, but the network computes something slightly different from the
    one they were trained in, so expect fine-tuning to be needed. Backbone-only result.

``export`` is the inverse for ``segmenter`` and ``discriminator`` (official key names and shapes, so
models trained here run in the official code) and for ``imagenet`` (adds the ``Scale.`` prefix).
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Mapping

import torch

from dada.errors import DadaError
from dada.models.discriminator import Discriminator
from dada.models.resnet import ARCHS, DeepLabResNet
from dada.models.segmenter import DEPTH_WIDTHS, Segmenter, build_segmenter, depth_block_widths

KINDS = ("segmenter", "discriminator", "imagenet", "torchvision")
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
IMAGENET_PREFIX = "Scale."
_SHOW = 5  # offending keys named in an error message


def as_state_dict(state_dict: object, kind: str) -> dict[str, torch.Tensor]:
    if not isinstance(state_dict, Mapping) or not state_dict:
        raise DadaError(f"expected a non-empty state dict (mapping of names to tensors) for kind {kind!r}, "
                        f"got {type(state_dict).__name__}")
    bad = [k for k, v in state_dict.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)]
    if bad:
        raise DadaError(f"not a state dict: entries {bad[:_SHOW]} are not tensors; give a plain state dict "
                        f"(kind {kind!r})")
    return dict(state_dict)


def strip_wrapper_prefixes(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Remove a ``module.`` (DataParallel/DDP) or ``_orig_mod.`` (torch.compile) prefix shared by all keys."""
    sd = dict(state_dict)
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if sd and all(k.startswith(prefix) for k in sd):
                sd = {k[len(prefix):]: v for k, v in sd.items()}
                changed = True
    return sd


def layout(module: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Key → shape of a module's state dict (works on the meta device)."""
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def check_layout(state_dict: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]],
                 what: str) -> dict[str, torch.Tensor]:
    """Return ``state_dict`` ordered as ``expected``; raise DadaError on missing, unexpected or
    wrongly shaped keys. A missing ``num_batches_tracked`` (checkpoints older than PyTorch 0.4.1) is
    filled with 0: it is a counter that no computation here reads."""
    sd = dict(state_dict)
    for key in expected:
        if key.endswith("num_batches_tracked") and key not in sd:
            sd[key] = torch.tensor(0, dtype=torch.long)
    missing = [k for k in expected if k not in sd]
    unexpected = [k for k in sd if k not in expected]
    wrong = [f"{k} {tuple(sd[k].shape)} (expected {expected[k]})" for k in expected
             if k in sd and tuple(sd[k].shape) != tuple(expected[k])]
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing key(s), first: {missing[:_SHOW]}")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected key(s), first: {unexpected[:_SHOW]}")
    if wrong:
        problems.append(f"{len(wrong)} key(s) with a wrong shape, first: {wrong[:_SHOW]}")
    if problems:
        raise DadaError(f"the weights do not fit {what}: " + "; ".join(problems)
                        + ". Check that the file and the kind/architecture/num_classes match.")
    return {k: sd[k] for k in expected}


def _blocks_per_stage(state_dict: Mapping[str, torch.Tensor]) -> tuple[int, ...]:
    counts = []
    for stage in range(1, 5):
        pattern = re.compile(rf"layer{stage}\.(\d+)\.")
        indices = [int(m.group(1)) for k in state_dict if (m := pattern.match(k))]
        counts.append(max(indices) + 1 if indices else 0)
    return tuple(counts)


def infer_arch(state_dict: Mapping[str, torch.Tensor]) -> str:
    """The :data:`ARCHS` name whose backbone has this state dict's block type, depth and width."""
    if "conv1.weight" not in state_dict:
        raise DadaError(f"no 'conv1.weight' key: not a DeepLab/ResNet state dict (first keys: "
                        f"{list(state_dict)[:_SHOW]})")
    width = state_dict["conv1.weight"].shape[0]
    block = "bottleneck" if "layer1.0.conv3.weight" in state_dict else "basic"
    layers = _blocks_per_stage(state_dict)
    for name, spec in ARCHS.items():
        if spec.block == block and spec.layers == layers and spec.width == width:
            return name
    raise DadaError(f"no known architecture has {block} blocks {list(layers)} with stem width {width}; "
                    f"known: {sorted(ARCHS)}")


def infer_spec(state_dict: Mapping[str, torch.Tensor]) -> dict:
    """:func:`build_segmenter` keyword arguments read from a segmenter state dict (official or ours).

    num_classes from ``layer6.conv2d_list.0.weight``; depth head from ``enc4_1.weight``; feature fusion
    from ``dec4.weight``; depth widths from the encoder shapes. An encoder with a decoder is read as the
    official DADA model (depth_head=True, feature_fusion=True).
    """
    sd = strip_wrapper_prefixes(state_dict)
    arch = infer_arch(sd)
    if "layer6.conv2d_list.0.weight" not in sd:
        raise DadaError("no 'layer6.conv2d_list.0.weight' key: not a DeepLab-v2 segmenter state dict "
                        "(an ImageNet backbone? use kind 'imagenet' or 'torchvision')")
    num_classes = sd["layer6.conv2d_list.0.weight"].shape[0]
    has_encoder = "enc4_1.weight" in sd
    fusion = "dec4.weight" in sd
    widths = "official"
    if has_encoder:
        found = tuple(sd[f"enc4_{i}.weight"].shape[0] for i in (1, 2, 3) if f"enc4_{i}.weight" in sd)
        channels = ARCHS[arch].out_channels
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


def _backbone_layout(model: torch.nn.Module | None, sd: Mapping[str, torch.Tensor]) -> dict:
    if model is None:
        with torch.device("meta"):
            model = DeepLabResNet(infer_arch(sd))
    prefixes = DeepLabResNet.BACKBONE_PREFIXES
    return {k: s for k, s in layout(model).items() if k.startswith(prefixes)}


def _check_kind(kind: str) -> None:
    if kind not in KINDS:
        raise DadaError(f"unknown weight kind {kind!r}; choose one of {KINDS}")


def convert(state_dict: Mapping[str, torch.Tensor], kind: str, *,
            model: torch.nn.Module | None = None) -> dict[str, torch.Tensor]:
    """An official state dict of ``kind`` → a state dict for our modules, checked key by key.

    Checked against ``model`` when given, else against the model the state dict describes. ``segmenter``
    and ``discriminator`` give complete state dicts (``model.load_state_dict(sd)``); ``imagenet`` and
    ``torchvision`` give the backbone keys only (see :func:`dada.models.load_pretrained`).
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
        return check_layout(sd, expected, "the segmenter")
    if kind == "discriminator":
        if model is None:
            if "0.weight" not in sd:
                raise DadaError(f"no '0.weight' key: not a discriminator state dict (first keys: "
                                f"{list(sd)[:_SHOW]})")
            out_ch, in_ch = sd["0.weight"].shape[:2]
            with torch.device("meta"):
                model = Discriminator(int(in_ch), int(out_ch))
        return check_layout(sd, layout(model), "the discriminator")
    if kind == "imagenet":
        backbone = {}
        for key, value in sd.items():
            parts = key.split(".")
            if len(parts) > 1 and parts[1] == "layer5":
                continue
            backbone[".".join(parts[1:])] = value
        return check_layout(backbone, _backbone_layout(model, backbone), "the backbone (kind 'imagenet': "
                            "keys are read as '<prefix>.<name>', as the official train.py does)")
    # torchvision
    backbone = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    return check_layout(backbone, _backbone_layout(model, backbone), "the backbone (kind 'torchvision')")


def export(state_dict: Mapping[str, torch.Tensor], kind: str) -> dict[str, torch.Tensor]:
    """Our state dict → the official layout of ``kind`` (``segmenter``, ``discriminator`` or ``imagenet``).

    The segmenter export of a ResNet-101 DADA model has exactly the 640 official keys and shapes and
    loads with the official strict ``load_state_dict``; the ``imagenet`` export prefixes the backbone
    keys with ``Scale.`` (the official ``train.py`` reads it when the file name contains
    ``DeepLab_resnet_pretrained_imagenet``).
    """
    _check_kind(kind)
    if kind == "torchvision":
        raise DadaError("export to the torchvision layout is not supported (its bottleneck stride sits on "
                        "the 3×3 conv); export kind 'segmenter' or 'imagenet' instead")
    sd = strip_wrapper_prefixes(as_state_dict(state_dict, kind))
    if kind == "segmenter":
        expected = layout(_meta_segmenter(infer_spec(sd)))
        checked = check_layout(sd, expected, "the segmenter")
        return {**{k: checked[k] for k in sd}, **checked}  # the caller's key order
    if kind == "discriminator":
        return convert(sd, "discriminator")
    backbone = {k: v for k, v in sd.items() if k.startswith(DeepLabResNet.BACKBONE_PREFIXES)}
    checked = check_layout(backbone, _backbone_layout(None, backbone), "the backbone")
    return {IMAGENET_PREFIX + k: v for k, v in checked.items()}
