"""Writing the built-in benchmark: a miniature SYNTHIA→Cityscapes generated on the user's machine.

``make_benchmark(out)`` writes, through the datasets' own writers (:mod:`dada.data.synthia`,
:mod:`dada.data.cityscapes`, so the files are what the readers read):

* ``OUT/source/``: the SYNTHIA-RAND-CITYSCAPES layout, with raw ``GT/LABELS`` (class and instance ids)
  and ``Depth`` in centimetres; ``train.txt`` and ``val.txt`` (every 10th image is held out);
* ``OUT/target/``: the Cityscapes layout for ``train`` and ``val``: images, labelIds (train labels too,
  for oracle models only) and disparity from the exact depth, ``d = f·B / Z``;
* ``OUT/preview.png`` and ``OUT/benchmark.json`` (parameters, counts, generator version, per-class pixel
  frequencies).

Each image has its own seed (``SeedSequence([seed, domain, index])``), so the output does not depend on
the number of workers; the folder is built under a temporary name and renamed when complete. See
``docs/benchmark.md``.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from dada.benchmark import fingerprint
from dada.benchmark.ids import SYN_TO_CS, SYN_TO_TRAIN  # noqa: F401 (re-exported)
from dada.benchmark.scene import sample_scene
from dada.benchmark.shading import render, render_v2
from dada.benchmark.styles import SOURCE_STYLE, SOURCE_STYLE_V2, TARGET_STYLE, TARGET_STYLE_V2
from dada.benchmark.world import EGO, FAR, VOID, Geometry, Scene
from dada.data import cityscapes, synthia
from dada.data.base import SampleWriter
from dada.data.classes import CLASSES_16, SYNTHIA_IDS
from dada.errors import DadaError
from dada.io import make_temp_dir, write_image, write_json

#: the generator of benchmark version 1 (the string its ``benchmark.json`` and cache keys carry)
GENERATOR_VERSION = "2"
#: every generator a benchmark version can be drawn with (``data.benchmark.generator``), the current one
#: first. Version 2's generator "3" computed its tone curve (power) in float32, whose last bit differs between
#: CPUs (numpy's AVX-512 and AVX2 code paths): a few target pixels moved by 1/255 from one machine to
#: another; "4" computes it in float64 and is the same on every CPU dispatch (tests/test_benchmark_v2.py).
#: "3" stays reachable so that the study made with it can be repeated (docs/benchmark.md)
GENERATORS = {1: (GENERATOR_VERSION,), 2: ("4", "3")}
#: benchmark version → its current generator; version 1 stays reachable, byte for byte
GENERATOR_VERSIONS = {version: generators[0] for version, generators in GENERATORS.items()}
#: the parameters of benchmark version 1 (the default version)
DEFAULTS = dict(seed=0, num_source=1000, num_target_train=1000, num_target_val=250, size=(128, 256))
#: the parameters of benchmark version 2 (docs/benchmark.md "Version 2"): 256×512, the shift ladder
#: (``shift``: none | appearance | content | full) and an optional fog (meteorological visibility in
#: metres; 0 = the clear day of Cityscapes)
DEFAULTS_V2 = dict(seed=0, num_source=400, num_target_train=400, num_target_val=100, size=(256, 512),
                   shift="full", fog=0)
SHIFTS = ("none", "appearance", "content", "full")
#: Cityscapes-like stereo baseline (metres) for the disparity files: d = f·B / Z
BASELINE = 0.209313
TRAIN_CITIES = ("aachen", "bochum", "bremen", "cologne", "darmstadt")
VAL_CITIES = ("frankfurt", "lindau", "munster")
SOURCE_VAL_EVERY = 10
_DOMAINS = {"source": 0, "target_train": 1, "target_val": 2}



def image_rng(seed: int, domain: str, index: int) -> np.random.Generator:
    """The generator of one image: independent of the order and the process that renders it."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _DOMAINS[domain], int(index)]))


def generate(seed: int, domain: str, index: int, size: tuple[int, int], version: int = 1,
             shift: str = "full", fog: float = 0,
             generator: str | None = None) -> tuple[np.ndarray, Geometry, Scene]:
    """(rgb uint8 H×W×3, geometry, scene) of one image of ``domain`` (source | target_train | target_val).

    Version 2's ``shift`` picks, for the source, the world and camera (the source's for ``content`` and
    ``full``, else the target's) and the rendering (the source's for ``appearance`` and ``full``, else the
    target's); the target is always the target. ``fog`` (visibility in metres, 0 none) is version 2's, as
    is ``generator`` (None: the current one, :data:`GENERATOR_VERSIONS`; "3": the study's, float32 tone
    curve)."""
    rng = image_rng(seed, domain, index)
    source = domain == "source"
    if version == 1:
        style = SOURCE_STYLE if source else TARGET_STYLE
        scene = sample_scene(rng, style, tuple(size))
        rgb, geo = render(scene, rng, "source" if source else "target")
        return rgb, geo, scene
    world = SOURCE_STYLE_V2 if source and shift in ("content", "full") else TARGET_STYLE_V2
    look = "source" if source and shift in ("appearance", "full") else "target"
    scene = sample_scene(rng, world, tuple(size))
    rgb, geo = render_v2(scene, rng, look, fog=fog, float32_math=str(generator) == "3")
    return rgb, geo, scene


def generate_sample(seed: int, domain: str, index: int, size: tuple[int, int], version: int = 1,
                    shift: str = "full", fog: float = 0, generator: str | None = None):
    """(rgb uint8 H×W×3, geometry) of one image of ``domain`` (source | target_train | target_val)."""
    rgb, geo, _ = generate(seed, domain, index, size, version, shift, fog, generator)
    return rgb, geo


def horizon_row(scene: Scene) -> float:
    """Where the road plane's vanishing line crosses the image (pixels from the top): c_y − f·tan(pitch)."""
    cam = scene.camera
    return cam.size[0] / 2.0 - cam.focal * math.tan(cam.pitch)


def source_name(index: int) -> str:
    return f"{index:07d}.png"


def target_stem(split: str, index: int) -> tuple[str, str]:
    """(city, file stem without suffix) of target image ``index`` of ``split``."""
    cities = TRAIN_CITIES if split == "train" else VAL_CITIES
    city = cities[index % len(cities)]
    return city, f"{city}_000000_{index:06d}"


#: files go straight into the temporary folder (renamed when complete), PNG compression 1 (fast)
WRITER = SampleWriter(atomic=False, png_compression=1)


def split_of(domain: str, index: int) -> str:
    """The fingerprint's split of an image: source_train | source_val | target_train | target_val."""
    if domain == "source":
        return "source_val" if index % SOURCE_VAL_EVERY == SOURCE_VAL_EVERY - 1 else "source_train"
    return domain


def _write_one(root: Path, seed: int, domain: str, index: int, size: tuple[int, int],
               opts: dict) -> tuple[np.ndarray, dict | None]:
    """Render and write one image with its labels and depth; returns the histogram of raw ids and, from
    version 2 on, the image's fingerprint statistics."""
    rgb, geo, scene = generate(seed, domain, index, size, **opts)
    stats = None
    if opts.get("version", 1) >= 2:
        stats = fingerprint.image_stats(rgb, geo.label, "source" if domain == "source" else "target",
                                        horizon_row(scene),
                                        components=split_of(domain, index).endswith("val"))
    if domain == "source":
        depth, label = geo.depth, geo.label
        bonnet = label == EGO
        if bonnet.any():  # the target camera's bonnet (shift none / appearance): SYNTHIA has no ego
            depth = np.where(bonnet, 2.0, depth)  # vehicle class, so it is void (ignored), ~2 m away
            label = np.where(bonnet, VOID, label).astype(label.dtype)
        synthia.write_synthia(root / "source", source_name(index), rgb, label,
                              synthia.centimetres(depth), instance_ids=geo.inst, writer=WRITER)
    else:
        split = "train" if domain == "target_train" else "val"
        city, stem = target_stem(split, index)
        valid = (geo.depth > 0) & (geo.depth < FAR)
        with np.errstate(divide="ignore"):
            disparity = np.where(valid, geo.focal * BASELINE / np.where(valid, geo.depth, 1.0), 0.0)
        cityscapes.write_cityscapes(root / "target", split, city, stem, rgb, SYN_TO_CS[geo.label],
                                    cityscapes.disparity_png(disparity, valid), writer=WRITER)
    return np.bincount(geo.label.ravel(), minlength=256), stats


def _work(job: tuple) -> tuple[str, np.ndarray, int, dict]:
    root, seed, domain, indices, size, opts = job
    hist = np.zeros(256, np.int64)
    stats: dict = {}
    for index in indices:
        h, s = _write_one(Path(root), seed, domain, index, size, opts)
        hist += h
        if s is not None:
            split = split_of(domain, index)
            stats[split] = fingerprint.merge(stats.get(split), s)
    return domain, hist, len(indices), stats


def _jobs(root: Path, seed: int, counts: dict[str, int], size, chunk: int, opts: dict) -> list[tuple]:
    jobs = []
    for domain, n in counts.items():
        for start in range(0, n, chunk):
            jobs.append((str(root), seed, domain, list(range(start, min(n, start + chunk))), tuple(size),
                         opts))
    return jobs


def check_params(num_source: int, num_target_train: int, num_target_val: int, size) -> tuple[int, int]:
    if min(num_source, num_target_train, num_target_val) < 0:
        raise DadaError("image counts must be >= 0")
    if num_source < 2 or num_target_val < 1:
        raise DadaError("need at least 2 source images (train and val) and 1 target val image")
    try:
        h, w = (int(v) for v in size)
    except (TypeError, ValueError):
        raise DadaError(f"size must be (H, W), got {size!r}") from None
    if h < 32 or w < 32 or h > 2048 or w > 4096:
        raise DadaError(f"size {h}x{w} is out of range: use H, W between 32 and 2048/4096, e.g. 128 256")
    return h, w


def version_options(version, shift, fog, generator=None) -> dict:
    """The generator options of ``version`` (1 or 2), checked: ``{}`` for version 1 (whose only shift is
    ``full`` and only generator "2"), else ``{"version": 2, "shift": ..., "fog": ..., "generator": ...}``
    (``generator`` None: the version's current one)."""
    try:
        version = int(version)
    except (TypeError, ValueError):
        raise DadaError(f"data.benchmark.version must be 1 or 2, got {version!r}") from None
    if version not in GENERATOR_VERSIONS:
        raise DadaError(f"data.benchmark.version must be one of {sorted(GENERATOR_VERSIONS)}, got {version}")
    shift = "full" if shift is None else str(shift)
    if shift not in SHIFTS:
        raise DadaError(f"data.benchmark.shift must be one of {'|'.join(SHIFTS)}, got {shift!r}")
    try:
        fog = float(fog or 0)
    except (TypeError, ValueError):
        raise DadaError(f"data.benchmark.fog must be a visibility in metres (0: none), got {fog!r}") from None
    generator = GENERATOR_VERSIONS[version] if generator is None else str(generator)
    if generator not in GENERATORS[version]:
        raise DadaError(f"data.benchmark.generator must be one of {'|'.join(GENERATORS[version])} for "
                        f"version {version} (null: {GENERATOR_VERSIONS[version]}), got {generator!r}")
    if version == 1:
        if shift != "full" or fog:
            raise DadaError("the shift ladder (data.benchmark.shift) and fog are version 2's: set "
                            "data.benchmark.version=2, or leave shift=full and fog=0 for version 1")
        return {}
    if fog < 0 or 0 < fog < 20:
        raise DadaError(f"data.benchmark.fog is a visibility in metres (>= 20, or 0 for none), got {fog}")
    return {"version": 2, "shift": shift, "fog": fog, "generator": generator}


def make_benchmark(
    out: str | os.PathLike,
    seed: int = 0,
    num_source: int | None = None,
    num_target_train: int | None = None,
    num_target_val: int | None = None,
    size=None,
    workers: int = 2,
    *,
    version: int = 1,
    shift: str = "full",
    fog: float = 0,
    generator: str | None = None,
    overwrite: bool = False,
    preview: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate the benchmark into ``out`` (built under a temporary name, renamed when complete).

    Counts and size left None take ``version``'s defaults (:data:`DEFAULTS`, :data:`DEFAULTS_V2`).
    ``progress(done, total)`` is called as images are written. ``overwrite`` replaces an existing ``out``;
    without it an existing non-empty ``out`` is an error. ``generator``: version 2's generator (None: the
    current one, "4"; "3": the study's, :data:`GENERATORS`). Returns ``out``.
    """
    opts = version_options(version, shift, fog, generator)
    base = DEFAULTS_V2 if opts else DEFAULTS
    num_source = base["num_source"] if num_source is None else num_source
    num_target_train = base["num_target_train"] if num_target_train is None else num_target_train
    num_target_val = base["num_target_val"] if num_target_val is None else num_target_val
    size = base["size"] if size is None else size
    out = Path(out)
    size = check_params(num_source, num_target_train, num_target_val, size)
    occupied = (out.is_dir() and any(out.iterdir())) or (out.exists() and not out.is_dir())
    if occupied and not overwrite:
        raise DadaError(f"{out} exists and is not empty: remove it, choose another folder or use --force")
    tmp = make_temp_dir(out.parent, f".{out.name}.tmp-")  # removes those of killed runs
    try:
        counts = {"source": num_source, "target_train": num_target_train, "target_val": num_target_val}
        for sub in ("RGB", "GT/LABELS", "Depth"):
            (tmp / "source" / sub).mkdir(parents=True)
        for kind in ("leftImg8bit", "gtFine", "disparity"):
            for split, cities, n in (
                ("train", TRAIN_CITIES, num_target_train),
                ("val", VAL_CITIES, num_target_val),
            ):
                for city in cities[: max(1, min(len(cities), n))]:
                    (tmp / "target" / kind / split / city).mkdir(parents=True)
        total = sum(counts.values())
        jobs = _jobs(tmp, seed, counts, size, chunk=16, opts=opts)
        hists = {d: np.zeros(256, np.int64) for d in counts}
        stats: dict = {}
        done = 0
        if workers <= 1 or len(jobs) == 1:
            results = map(_work, jobs)
            pool = None
        else:
            ctx = multiprocessing.get_context(
                "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
            )
            pool = ctx.Pool(int(workers))
            results = pool.imap_unordered(_work, jobs)
        try:
            for domain, hist, n, part in results:
                hists[domain] += hist
                for split, st in part.items():
                    stats[split] = fingerprint.merge(stats.get(split), st)
                done += n
                if progress is not None:
                    progress(done, total)
        finally:
            if pool is not None:
                pool.close()
                pool.join()
        names = [source_name(i) for i in range(num_source)]
        val = [n for i, n in enumerate(names) if i % SOURCE_VAL_EVERY == SOURCE_VAL_EVERY - 1]
        train = [n for i, n in enumerate(names) if i % SOURCE_VAL_EVERY != SOURCE_VAL_EVERY - 1]
        synthia.write_list(tmp / "source", "train", train)
        synthia.write_list(tmp / "source", "val", val)
        if preview:
            write_preview(tmp / "preview.png", seed, size, opts=opts)
        summary = _summary(seed, counts, size, hists, len(train), len(val))
        if opts:  # version 2: the version, the ladder's rung, the fog and the fingerprint
            summary["generator_version"] = opts["generator"]
            summary["benchmark_version"] = opts["version"]
            summary["params"].update(shift=opts["shift"], fog=opts["fog"])
            summary["fingerprint"] = fingerprint.summarise(stats)
        write_json(tmp / "benchmark.json", summary)
        if out.exists() and overwrite:
            shutil.rmtree(out) if out.is_dir() else out.unlink()
        elif out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        elif out.exists():  # another process finished first: keep its folder (someone may be reading it)
            raise DadaError(f"{out} appeared while generating; remove it or use --force to replace it")
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _summary(seed, counts, size, hists, n_train, n_val) -> dict:
    def freq(hist: np.ndarray, lut: np.ndarray, names) -> dict[str, float]:
        per = np.bincount(lut, weights=hist, minlength=256)
        total = hist.sum()
        return {name: round(float(per[i] / total), 6) if total else 0.0 for i, name in enumerate(names)}

    return {
        "format": "dada-seg-benchmark/1",
        "generator_version": GENERATOR_VERSION,
        "params": {"seed": seed, "size": list(size), **{f"num_{k}": v for k, v in counts.items()}},
        "counts": {
            "source": {"all": counts["source"], "train": n_train, "val": n_val},
            "target": {"train": counts["target_train"], "val": counts["target_val"]},
        },
        "layout": {
            "source": "SYNTHIA-RAND-CITYSCAPES (RGB, GT/LABELS, Depth; train.txt, val.txt)",
            "target": "Cityscapes (leftImg8bit, gtFine labelIds, disparity; train, val)",
        },
        "class_frequencies_16": {d: freq(h, SYN_TO_TRAIN, CLASSES_16.names) for d, h in hists.items()},
        "raw_synthia_frequencies": {
            d: {name: round(float(h[i] / max(1, h.sum())), 6) for name, i in SYNTHIA_IDS.items() if h[i]}
            for d, h in hists.items()
        },
    }


def write_preview(path: Path, seed: int, size, rows: int = 4, opts: dict | None = None) -> None:
    """A grid: per row, a source sample (RGB, labels, depth) and a target val sample (RGB, labels, depth)."""
    h, w = size
    tiles = []
    for i in range(rows):
        row = []
        for domain in ("source", "target_val"):
            rgb, geo = generate_sample(seed, domain, i, size, **(opts or {}))
            colour = CLASSES_16.colorize(SYN_TO_TRAIN[geo.label])
            d = np.clip(geo.depth, 1.0, FAR)
            grey = np.clip(255 * (1 - np.log(d) / math.log(200.0)), 0, 255).astype(np.uint8)
            depth = cv2.applyColorMap(grey, cv2.COLORMAP_MAGMA)[..., ::-1]
            depth[geo.depth <= 0] = 0
            row += [rgb, colour, depth]
        sep = np.full((h, 4, 3), 255, np.uint8)
        tiles.append(np.concatenate(row[:3] + [sep] + row[3:], axis=1))
    grid = np.concatenate([np.concatenate([t, np.full((2, t.shape[1], 3), 255, np.uint8)]) for t in tiles])
    write_image(path, np.ascontiguousarray(grid[..., ::-1]))
