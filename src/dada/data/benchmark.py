"""The built-in benchmark: a miniature SYNTHIA→Cityscapes generated on the user's machine.

``make_benchmark(out)`` writes

* ``OUT/source/``: SYNTHIA-RAND-CITYSCAPES layout and formats: ``RGB/0000000.png`` (8-bit RGB),
  ``GT/LABELS/0000000.png`` (16-bit, 3 channels: raw SYNTHIA class id in the first channel in RGB order,
  i.e. OpenCV BGR index 2, instance id in the second), ``Depth/0000000.png`` (16-bit, 3 equal channels:
  depth in centimetres, clipped to 65535, so OpenCV's IMREAD_ANYDEPTH grayscale is exact), ``train.txt``
  and ``val.txt`` (file names; every 10th image is held out for validation);
* ``OUT/target/``: Cityscapes layout and formats for ``train`` and ``val``:
  ``leftImg8bit/<split>/<city>/<city>_000000_NNNNNN_leftImg8bit.png``,
  ``gtFine/<split>/<city>/..._gtFine_labelIds.png`` (8-bit Cityscapes labelIds; train labels too, for
  oracle models only) and ``disparity/<split>/<city>/..._disparity.png`` (16-bit, p = 256·d + 1, 0 invalid);
* ``OUT/preview.png`` and ``OUT/benchmark.json`` (parameters, counts, generator version, per-class pixel
  frequencies).

Scenes come from :mod:`dada.data.benchmark_render`. Each image has its own seed
(``SeedSequence([seed, domain, index])``), so the output does not depend on the number of workers; the
folder is built under a temporary name and renamed when complete. See ``docs/benchmark.md``.
"""

from __future__ import annotations

import hashlib
import json
import math
import multiprocessing
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np

from dada.data.benchmark_render import EGO, FAR, SOURCE_STYLE, TARGET_STYLE, render, sample_scene
from dada.data.classes import CITYSCAPES_LABEL_IDS, CLASSES_16, SYNTHIA_IDS, SYNTHIA_TO_16
from dada.errors import DadaError
from dada.io import write_image, write_json

GENERATOR_VERSION = "2"
DEFAULTS = dict(seed=0, num_source=1000, num_target_train=1000, num_target_val=250, size=(128, 256))
#: Cityscapes-like stereo baseline (metres) for the disparity files: d = f·B / Z
BASELINE = 0.209313
TRAIN_CITIES = ("aachen", "bochum", "bremen", "cologne", "darmstadt")
VAL_CITIES = ("frankfurt", "lindau", "munster")
SOURCE_VAL_EVERY = 10
_PNG = [cv2.IMWRITE_PNG_COMPRESSION, 1]
_DOMAINS = {"source": 0, "target_train": 1, "target_val": 2}


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


def image_rng(seed: int, domain: str, index: int) -> np.random.Generator:
    """The generator of one image: independent of the order and the process that renders it."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), _DOMAINS[domain], int(index)]))


def generate_sample(seed: int, domain: str, index: int, size: tuple[int, int]):
    """(rgb uint8 H×W×3, geometry) of one image of ``domain`` (source | target_train | target_val)."""
    rng = image_rng(seed, domain, index)
    style = SOURCE_STYLE if domain == "source" else TARGET_STYLE
    scene = sample_scene(rng, style, tuple(size))
    return render(scene, rng, "source" if domain == "source" else "target")


def source_name(index: int) -> str:
    return f"{index:07d}.png"


def target_stem(split: str, index: int) -> tuple[str, str]:
    """(city, file stem without suffix) of target image ``index`` of ``split``."""
    cities = TRAIN_CITIES if split == "train" else VAL_CITIES
    city = cities[index % len(cities)]
    return city, f"{city}_000000_{index:06d}"


def _encode(path: Path, image: np.ndarray) -> None:
    ok, data = cv2.imencode(".png", image, _PNG)
    if not ok:
        raise DadaError(f"could not encode {path}")
    path.write_bytes(data.tobytes())


def _write_one(root: Path, seed: int, domain: str, index: int, size: tuple[int, int]) -> np.ndarray:
    """Render and write one image with its labels and depth; returns the histogram of raw ids."""
    rgb, geo = generate_sample(seed, domain, index, size)
    if domain == "source":
        name = source_name(index)
        _encode(root / "source" / "RGB" / name, rgb[..., ::-1])
        labels = np.zeros(rgb.shape, np.uint16)
        labels[..., 2] = geo.label
        labels[..., 1] = geo.inst
        _encode(root / "source" / "GT" / "LABELS" / name, labels)
        cm = np.clip(np.rint(geo.depth * 100.0), 0, 65535).astype(np.uint16)
        _encode(root / "source" / "Depth" / name, np.repeat(cm[..., None], 3, axis=2))
    else:
        split = "train" if domain == "target_train" else "val"
        city, stem = target_stem(split, index)
        t = root / "target"
        _encode(t / "leftImg8bit" / split / city / f"{stem}_leftImg8bit.png", rgb[..., ::-1])
        _encode(t / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png", SYN_TO_CS[geo.label])
        focal = geo.focal
        valid = (geo.depth > 0) & (geo.depth < FAR)
        with np.errstate(divide="ignore"):
            disp = np.where(valid, focal * BASELINE / np.where(valid, geo.depth, 1.0), 0.0)
        p = np.where(valid, np.clip(np.rint(disp * 256.0) + 1, 1, 65535), 0).astype(np.uint16)
        _encode(t / "disparity" / split / city / f"{stem}_disparity.png", p)
    return np.bincount(geo.label.ravel(), minlength=256)


def _work(job: tuple) -> tuple[str, np.ndarray, int]:
    root, seed, domain, indices, size = job
    hist = np.zeros(256, np.int64)
    for index in indices:
        hist += _write_one(Path(root), seed, domain, index, size)
    return domain, hist, len(indices)


def _jobs(root: Path, seed: int, counts: dict[str, int], size, chunk: int) -> list[tuple]:
    jobs = []
    for domain, n in counts.items():
        for start in range(0, n, chunk):
            jobs.append((str(root), seed, domain, list(range(start, min(n, start + chunk))), tuple(size)))
    return jobs


def _check_params(num_source: int, num_target_train: int, num_target_val: int, size) -> tuple[int, int]:
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


def make_benchmark(
    out: str | os.PathLike,
    seed: int = 0,
    num_source: int = DEFAULTS["num_source"],
    num_target_train: int = DEFAULTS["num_target_train"],
    num_target_val: int = DEFAULTS["num_target_val"],
    size=DEFAULTS["size"],
    workers: int = 2,
    *,
    overwrite: bool = False,
    preview: bool = True,
    progress: Callable[[int, int], None] | None = None,
) -> Path:
    """Generate the benchmark into ``out`` (built under a temporary name, renamed when complete).

    ``progress(done, total)`` is called as images are written. ``overwrite`` replaces an existing ``out``;
    without it an existing non-empty ``out`` is an error. Returns ``out``.
    """
    out = Path(out)
    size = _check_params(num_source, num_target_train, num_target_val, size)
    occupied = (out.is_dir() and any(out.iterdir())) or (out.exists() and not out.is_dir())
    if occupied and not overwrite:
        raise DadaError(f"{out} exists and is not empty: remove it, choose another folder or use --force")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
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
        jobs = _jobs(tmp, seed, counts, size, chunk=16)
        hists = {d: np.zeros(256, np.int64) for d in counts}
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
            for domain, hist, n in results:
                hists[domain] += hist
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
        (tmp / "source" / "train.txt").write_text("".join(n + "\n" for n in train))
        (tmp / "source" / "val.txt").write_text("".join(n + "\n" for n in val))
        if preview:
            write_preview(tmp / "preview.png", seed, size)
        write_json(tmp / "benchmark.json", _summary(seed, counts, size, hists, len(train), len(val)))
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


def write_preview(path: Path, seed: int, size, rows: int = 4) -> None:
    """A grid: per row, a source sample (RGB, labels, depth) and a target val sample (RGB, labels, depth)."""
    h, w = size
    tiles = []
    for i in range(rows):
        row = []
        for domain in ("source", "target_val"):
            rgb, geo = generate_sample(seed, domain, i, size)
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


# ------------------------------------------------------------------------------------------- caching
def benchmark_params(**params) -> dict:
    """The full parameter set (defaults filled in) that identifies a generated benchmark."""
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise DadaError(f"unknown benchmark parameter(s) {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    p["size"] = list(_check_params(p["num_source"], p["num_target_train"], p["num_target_val"], p["size"]))
    p = {k: (int(v) if k != "size" else v) for k, v in p.items()}
    return {**p, "generator_version": GENERATOR_VERSION}


def default_cache_dir() -> Path:
    env = os.environ.get("DADA_CACHE")
    return Path(env) if env else Path.home() / ".cache" / "dada-seg"


def ensure_benchmark(
    cache_dir: str | os.PathLike | None = None,
    workers: int = 2,
    progress: Callable[[int, int], None] | None = None,
    **params,
) -> Path:
    """The benchmark for ``params`` (see :data:`DEFAULTS`) in ``cache_dir`` (default ``$DADA_CACHE`` or
    ``~/.cache/dada-seg``), folder ``benchmark-<hash of the parameters>``: generated when missing, reused
    when present (complete folders only: they appear by an atomic rename)."""
    p = benchmark_params(**params)
    key = hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:12]
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    out = root / f"benchmark-{key}"
    if (out / "benchmark.json").is_file():
        return out
    args = {k: v for k, v in p.items() if k != "generator_version"}
    try:
        make_benchmark(out, workers=workers, progress=progress, overwrite=False, **args)
    except DadaError:
        if (out / "benchmark.json").is_file():  # another process finished it first
            return out
        raise
    except OSError:
        if (out / "benchmark.json").is_file():
            return out
        raise
    return out


def resolve_root(root: str | os.PathLike, part: str, params: dict | None = None) -> Path:
    """A dataset root from a config: ``@benchmark`` stands for the built-in benchmark with ``params``
    (``data.benchmark`` of the config; None values keep the defaults), generated on first use: its
    ``source/`` folder for ``part == "source"``, else ``target/``. Any other root is returned as is."""
    from dada.config import BENCHMARK_ROOT

    if str(root) != BENCHMARK_ROOT:
        return Path(root)
    chosen = {k: v for k, v in (params or {}).items() if v is not None}
    folder = ensure_benchmark(**chosen)
    return Path(folder) / ("source" if part == "source" else "target")
