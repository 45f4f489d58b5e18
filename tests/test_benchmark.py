"""The built-in benchmark: formats, determinism, class coverage, exact depth and occlusion, caching, CLI."""

from __future__ import annotations

import hashlib
import json
import math
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from dada import benchmark as bm
from dada.benchmark import world as br
from dada.benchmark import writer as bw
from dada.benchmark.scene import sample_scene
from dada.benchmark.styles import SOURCE_STYLE, TARGET_STYLE
from dada.data.classes import CITYSCAPES_LABEL_IDS, SYNTHIA_IDS, SYNTHIA_TO_16
from dada.errors import DadaError

SIZE = (64, 128)
COUNTS = dict(num_source=12, num_target_train=5, num_target_val=6)


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return bm.make_benchmark(tmp_path_factory.mktemp("b") / "bench", seed=3, size=SIZE, workers=1, **COUNTS)


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _read(path: Path, flags=cv2.IMREAD_UNCHANGED) -> np.ndarray:
    array = cv2.imread(str(path), flags)
    assert array is not None, path
    return array


# ------------------------------------------------------------------------------------------- formats
def test_source_layout_and_formats(bench):
    src = bench / "source"
    names = sorted(p.name for p in (src / "RGB").iterdir())
    assert names == [f"{i:07d}.png" for i in range(COUNTS["num_source"])]
    for sub in ("GT/LABELS", "Depth"):
        assert sorted(p.name for p in (src / sub).iterdir()) == names
    train = (src / "train.txt").read_text().split()
    val = (src / "val.txt").read_text().split()
    assert val == ["0000009.png"] and sorted(train + val) == names and not set(train) & set(val)
    raw_ids = set(SYNTHIA_IDS.values())
    for name in names:
        rgb = _read(src / "RGB" / name)
        assert rgb.dtype == np.uint8 and rgb.shape == (*SIZE, 3)
        labels = _read(src / "GT" / "LABELS" / name)
        assert labels.dtype == np.uint16 and labels.shape == (*SIZE, 3)
        assert set(np.unique(labels[..., 2]).tolist()) <= raw_ids  # class: first channel in RGB order
        assert not labels[..., 0].any()
        assert labels[..., 1].max() > 0  # instance ids
        depth = _read(src / "Depth" / name)
        assert depth.dtype == np.uint16 and depth.shape == (*SIZE, 3)
        assert (depth[..., 0] == depth[..., 1]).all() and (depth[..., 1] == depth[..., 2]).all()
        gray = _read(src / "Depth" / name, cv2.IMREAD_ANYDEPTH)  # what the official get_depth reads
        assert gray.dtype == np.uint16 and gray.ndim == 2 and (gray == depth[..., 0]).all()
        assert (labels[..., 2] == SYNTHIA_IDS["sky"]).any() <= (depth[..., 0] == 65535).any()


def test_target_layout_and_formats(bench):
    tgt = bench / "target"
    cs_ids = set(CITYSCAPES_LABEL_IDS.values())
    for split, n in (("train", COUNTS["num_target_train"]), ("val", COUNTS["num_target_val"])):
        images = sorted((tgt / "leftImg8bit" / split).glob("*/*.png"))
        assert len(images) == n
        for path in images:
            city = path.parent.name
            m = re.fullmatch(rf"({city})_000000_(\d{{6}})_leftImg8bit\.png", path.name)
            assert m, path.name
            stem = f"{city}_000000_{m.group(2)}"
            rgb = _read(path)
            assert rgb.dtype == np.uint8 and rgb.shape == (*SIZE, 3)
            label = _read(tgt / "gtFine" / split / city / f"{stem}_gtFine_labelIds.png")
            assert label.dtype == np.uint8 and label.shape == SIZE
            assert set(np.unique(label).tolist()) <= cs_ids
            assert (label[-1] == CITYSCAPES_LABEL_IDS["ego vehicle"]).any()
            disp = _read(tgt / "disparity" / split / city / f"{stem}_disparity.png")
            assert disp.dtype == np.uint16 and disp.shape == SIZE
            sky = label == CITYSCAPES_LABEL_IDS["sky"]
            assert (disp[sky] == 0).all() and (disp[~sky & (label != 1)] > 0).all()
    assert {p.name for p in (tgt / "leftImg8bit" / "val").iterdir()} <= set(bw.VAL_CITIES)


def test_summary_and_preview(bench):
    info = json.loads((bench / "benchmark.json").read_text())
    assert info["generator_version"] == bm.GENERATOR_VERSION
    assert info["params"] == {"seed": 3, "size": list(SIZE), **COUNTS}
    assert info["counts"]["source"] == {"all": 12, "train": 11, "val": 1}
    for freqs in info["class_frequencies_16"].values():
        assert len(freqs) == 16 and 0.5 < sum(freqs.values()) <= 1.0 + 1e-6
    preview = _read(bench / "preview.png")
    assert preview.dtype == np.uint8 and preview.shape[1] == 6 * SIZE[1] + 4
    assert preview.shape[0] >= 4 * SIZE[0]


def test_loaders_read_the_folders(bench):
    from dada.data import build_dataset

    src = build_dataset("synthia", bench / "source", "all", 16, depth=True)
    assert len(src) == COUNTS["num_source"]
    item = src[0]
    raw = _read(bench / "source" / "Depth" / "0000000.png", cv2.IMREAD_ANYDEPTH).astype(np.float32)
    assert np.allclose(item["depth"][0].numpy(), 65536.0 / (raw + 1.0))
    labels = set(item["label"].unique().tolist())
    assert labels <= set(range(16)) | {255} and len(labels) >= 6
    assert len(build_dataset("synthia", bench / "source", "val", 16)) == 1
    assert len(build_dataset("synthia", bench / "source", "train", 16)) == 11
    val = build_dataset("cityscapes", bench / "target", "val", 16, depth=True)
    assert len(val) == COUNTS["num_target_val"]
    item = val[0]
    assert item["image"].shape == (3, *SIZE) and item["label"].shape == SIZE
    assert set(item["label"].unique().tolist()) <= set(range(16)) | {255}
    assert len(build_dataset("cityscapes", bench / "target", "train", 16)) == COUNTS["num_target_train"]


# ----------------------------------------------------------------------------------------- determinism
def test_same_seed_is_byte_identical_with_any_worker_count(bench, tmp_path):
    again = bm.make_benchmark(tmp_path / "again", seed=3, size=SIZE, workers=2, **COUNTS)
    assert _files(again) == _files(bench)


#: sha256 over every file of the ``bench`` fixture (seed 3, 64×128, 12 + 5 + 6 images): relative path,
#: then the decoded pixels (dtype, shape, bytes) of PNGs and the bytes of other files. Recorded from the
#: generator before it moved into dada.benchmark (the files were byte-identical then too); a change means
#: the benchmark changed: bump GENERATOR_VERSION and record the new value.
GOLDEN_CONTENT_SHA256 = "fe9da52bb288bb3cd57c38df8680986869250d07e88764e2633201cd694fd70b"


def content_digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*")):
        if not path.is_file():
            continue
        digest.update(str(path.relative_to(root)).encode() + b"\0")
        if path.suffix == ".png":
            array = cv2.imdecode(np.frombuffer(path.read_bytes(), np.uint8), cv2.IMREAD_UNCHANGED)
            digest.update(f"{array.dtype}{array.shape}".encode())
            digest.update(np.ascontiguousarray(array).tobytes())
        else:
            digest.update(path.read_bytes())
    return digest.hexdigest()


def test_same_seed_reproduces_the_recorded_benchmark(bench):
    assert content_digest(bench) == GOLDEN_CONTENT_SHA256


def test_different_seeds_differ(bench, tmp_path):
    other = bm.make_benchmark(tmp_path / "other", seed=4, size=SIZE, workers=1, preview=False, **COUNTS)
    a, b = _files(bench), _files(other)
    images = [k for k in a if k.endswith(".png") and k != "preview.png"]
    assert images and all(k in b for k in images)
    assert sum(a[k] != b[k] for k in images) >= len(images) - 2


# ------------------------------------------------------------------------------------------ coverage
@pytest.mark.parametrize("domain", ["source", "target_train", "target_val"])
def test_every_class_appears_in_each_split(domain):
    seen = np.zeros(256, bool)
    for i in range(40):
        _, geo = bm.generate_sample(0, domain, i, SIZE)
        seen[np.unique(geo.label)] = True
        if all(seen[raw] for raw in SYNTHIA_TO_16):
            break
    missing = [name for name, raw in SYNTHIA_IDS.items() if raw in SYNTHIA_TO_16 and not seen[raw]]
    assert not missing, f"{domain}: classes never seen in 40 images: {missing}"


# ------------------------------------------------------------------------------------- exact geometry
def _analytic_ground(cam: br.Camera) -> np.ndarray:
    """Z = h / (y_n cos(pitch) + sin(pitch)), y_n = (v + 0.5 - H/2) / f, written out independently."""
    h, w = cam.size
    f = w / 2 / math.tan(cam.hfov / 2)
    yn = (np.arange(h) + 0.5 - h / 2) / f
    denom = yn * math.cos(cam.pitch) + math.sin(cam.pitch)
    z = np.where(denom > 0, cam.height / np.where(denom > 0, denom, 1), np.inf)
    return np.repeat(z[:, None], w, axis=1)


@pytest.mark.parametrize("domain", ["source", "target_train"])
def test_road_plane_depth_matches_camera_geometry(bench, domain):
    for index in range(3):
        rng = bw.image_rng(0, domain, index)
        style = SOURCE_STYLE if domain == "source" else TARGET_STYLE
        cam = sample_scene(rng, style, SIZE).camera
        _, geo = bm.generate_sample(0, domain, index, SIZE)
        ground = np.isin(geo.label, [br.ROAD, br.SIDEWALK, br.LANEMARKING, br.TERRAIN])
        assert ground.sum() > 0.15 * ground.size
        np.testing.assert_allclose(geo.depth[ground], _analytic_ground(cam)[ground], rtol=1e-9)
    # and the written file holds the same depth in centimetres
    cam = sample_scene(bw.image_rng(3, "source", 0), SOURCE_STYLE, SIZE).camera
    labels = _read(bench / "source" / "GT" / "LABELS" / "0000000.png")[..., 2]
    cm = _read(bench / "source" / "Depth" / "0000000.png", cv2.IMREAD_ANYDEPTH)
    ground = np.isin(labels, [br.ROAD, br.SIDEWALK, br.LANEMARKING, br.TERRAIN])
    expected = np.clip(np.rint(_analytic_ground(cam) * 100), 0, 65535)
    assert ground.any() and (cm[ground] == expected[ground]).all()


def test_fronto_parallel_face_has_its_distance_as_depth():
    cam = br.Camera(height=1.5, pitch=0.0, yaw=0.0, x=0.0, hfov=math.radians(60), size=SIZE)
    scene = br.Scene(cam)
    scene.add("box", (-2, 0, 20), (2, 3, 22), br.BUS, (1, 1, 0))
    geo = br.render_geometry(scene)
    bus = geo.label == br.BUS
    assert bus.sum() > 50
    np.testing.assert_allclose(geo.depth[bus], 20.0, rtol=1e-12)


def test_occluders_are_nearer_than_what_they_hide():
    cam = br.Camera(height=1.3, pitch=math.radians(1), yaw=0.0, x=1.5, hfov=math.radians(50), size=SIZE)
    scene = br.Scene(cam)
    scene.add("box", (3, 0, 10), (15, 12, 40), br.BUILDING, (0.5, 0.5, 0.5))
    without = br.render_geometry(scene)
    scene.add("box", (2, 0.2, 14), (3.8, 1.5, 18.5), br.CAR, (1, 0, 0))
    with_car = br.render_geometry(scene)
    car = with_car.label == br.CAR
    assert car.sum() > 30
    assert (without.label[car] == br.BUILDING).any() and (without.label[car] == br.ROAD).any()
    assert (with_car.depth[car] < without.depth[car]).all()
    assert (with_car.depth[~car] == without.depth[~car]).all()
    assert (with_car.label[~car] == without.label[~car]).all()


@pytest.mark.parametrize("domain", ["source", "target_val"])
def test_removing_any_object_only_reveals_farther_surfaces(domain):
    rng = bw.image_rng(1, domain, 7)
    style = SOURCE_STYLE if domain == "source" else TARGET_STYLE
    scene = sample_scene(rng, style, SIZE)
    full = br.render_geometry(scene)
    instances = [i for i in np.unique(full.inst) if i > 0]
    assert len(instances) >= 5
    for inst in instances[:: max(1, len(instances) // 12)]:
        kept = [p for p in scene.prims if p.inst != inst]
        reduced = br.Scene(scene.camera, kept, scene.road_half, scene.walk, scene.lanes, scene.cross,
                           scene.zebra, scene.terrain)
        geo = br.render_geometry(reduced)
        changed = full.inst == inst
        assert (full.depth[changed] < geo.depth[changed]).all()
        assert (full.depth[~changed] == geo.depth[~changed]).all()


def test_disparity_file_is_focal_times_baseline_over_depth(bench):
    _, geo = bm.generate_sample(3, "target_val", 0, SIZE)
    city, stem = bw.target_stem("val", 0)
    p = _read(bench / "target" / "disparity" / "val" / city / f"{stem}_disparity.png").astype(np.float64)
    valid = p > 0
    expected = geo.focal * bw.BASELINE / geo.depth[valid]
    np.testing.assert_allclose((p[valid] - 1) / 256, expected, atol=0.5 / 256 + 1e-9)


# ------------------------------------------------------------------------------------ cache, errors, CLI
def test_ensure_benchmark_reuses_the_cache(tmp_path, monkeypatch):
    params = dict(seed=1, num_source=2, num_target_train=1, num_target_val=1, size=(32, 64))
    first = bm.ensure_benchmark(tmp_path, workers=1, **params)
    assert first.name.startswith("benchmark-") and (first / "benchmark.json").is_file()
    calls = []
    monkeypatch.setattr(bw, "make_benchmark", lambda out, **k: calls.append(out))
    assert bm.ensure_benchmark(tmp_path, **params) == first
    monkeypatch.setenv("DADA_CACHE", str(tmp_path))
    assert bm.ensure_benchmark(**params) == first
    assert calls == []
    other = bm.ensure_benchmark(tmp_path, **{**params, "seed": 2})  # other parameters: another folder
    assert calls == [other] and other != first and other.parent == first.parent
    with pytest.raises(DadaError, match="unknown benchmark parameter"):
        bm.ensure_benchmark(tmp_path, colour=1)


def test_interrupted_generation_leaves_nothing_that_looks_complete(tmp_path):
    def stop(done, total):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        bm.make_benchmark(tmp_path / "b", num_source=4, num_target_train=1, num_target_val=1, size=(32, 64),
                          workers=1, progress=stop)
    assert list(tmp_path.iterdir()) == []


def test_existing_folder_needs_overwrite(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "x").write_text("x")
    with pytest.raises(DadaError, match="not empty"):
        bm.make_benchmark(tmp_path / "b", num_source=2, num_target_train=1, num_target_val=1, size=(32, 64))
    out = bm.make_benchmark(tmp_path / "b", num_source=2, num_target_train=1, num_target_val=1, size=(32, 64),
                            workers=1, overwrite=True)
    assert not (out / "x").exists() and (out / "benchmark.json").is_file()


def test_cli_make_benchmark(tmp_path, capsys):
    from dada.cli import main

    out = tmp_path / "cli"
    assert main(["make-benchmark", str(out), "--seed", "5", "--num-source", "3", "--num-target-train", "1",
                 "--num-target-val", "2", "--size", "32", "64", "--workers", "1"]) == 0
    line = capsys.readouterr().out
    assert "6 images" in line and str(out / "preview.png") in line
    assert json.loads((out / "benchmark.json").read_text())["params"]["seed"] == 5
    assert main(["make-benchmark", str(out), "--num-source", "3"]) == 2
    assert "not empty" in capsys.readouterr().err


def test_speed_benchmark_script_exists():
    script = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_generator.py"
    text = script.read_text()
    assert "bench_generator.json" in text and "make_benchmark" in text


def test_a_folder_finished_meanwhile_by_another_process_is_kept(tmp_path):
    out = tmp_path / "b"

    def other_process_finishes(done, total):
        if not out.exists():
            out.mkdir()
            (out / "benchmark.json").write_text("{}")

    with pytest.raises(DadaError, match="appeared while generating"):
        bm.make_benchmark(out, num_source=2, num_target_train=1, num_target_val=1, size=(32, 64), workers=1,
                          progress=other_process_finishes)
    assert [p.name for p in tmp_path.iterdir()] == ["b"] and (out / "benchmark.json").read_text() == "{}"
