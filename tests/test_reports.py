"""Reports and figures: PNGs written and readable, paper-table layout, config hash, compare over seeds."""

import copy
import json

import cv2
import numpy as np
import pytest

from dada.cli import main
from dada.data.classes import CLASSES_7, CLASSES_16
from dada.errors import DadaError
from dada.evaluation import figures
from dada.evaluation.compare import compare_runs
from dada.evaluation.reports import config_hash, results_markdown, write_results


def read_back(path, min_size=(100, 100)):
    image = cv2.imread(str(path))
    assert image is not None, f"{path} is not a readable image"
    assert image.shape[0] >= min_size[0] and image.shape[1] >= min_size[1]
    assert image.std() > 5, f"{path} is uniform"
    return image


def test_colorize_overlay_depth_arrays(tmp_path):
    pred = np.array([[0, 12], [255, 6]])
    rgb = figures.colorize(pred, 16)
    assert tuple(rgb[0, 0]) == CLASSES_16.palette[0] and tuple(rgb[0, 1]) == (0, 0, 142)
    assert tuple(rgb[1, 0]) == (0, 0, 0)  # ignore is black
    assert tuple(figures.colorize(np.array([[6]]), 7)[0, 0]) == CLASSES_7.palette[6]
    blended = figures.overlay(np.full((2, 2, 3), 200, np.uint8), rgb, alpha=0.5)
    assert tuple(blended[0, 1]) == (100, 100, 171)
    depth = figures.depth_to_rgb(np.array([[1.0, 2.0], [3.0, np.nan]]))
    assert depth.dtype == np.uint8 and tuple(depth[1, 1]) == (0, 0, 0)
    assert depth[0, 0].sum() < depth[1, 0].sum()  # near (large inverse depth) is brighter
    figures.save_rgb(tmp_path / "c.png", np.repeat(np.repeat(rgb, 60, 0), 60, 1))
    assert cv2.imread(str(tmp_path / "c.png"))[0, 70][::-1].tolist() == [0, 0, 142]


def test_bar_colours_distinct_for_the_studys_eighteen_set_ups(tmp_path):
    """The ablation chart has 18 set-ups: tab10 repeated S1's colour for CLAN; each gets its own now."""
    for n in (3, 10, 18, 20):
        assert len(set(figures.series_colours(n))) == n
    assert len(figures.series_colours(25)) == 25  # beyond 20: colours repeat, nothing fails
    series = {f"set-up {k}": [0.1 * (k % 10)] * 16 for k in range(18)}
    read_back(figures.iou_bar_chart(series, CLASSES_16.names, tmp_path / "bars.png"))


def test_figures_written_and_readable(tmp_path):
    rng = np.random.default_rng(0)
    label = rng.integers(0, 16, (48, 96))
    rows = [{"image": rng.integers(0, 255, (24, 48, 3), dtype=np.uint8), "label": label, "name": f"c/{i}.png",
             "predictions": {"AdvEnt": rng.integers(0, 16, (48, 96)), "DADA": label}} for i in range(2)]
    image = read_back(figures.qualitative_grid(rows, tmp_path / "grid.png", 16))
    assert image.shape[1] > image.shape[0]  # four columns
    series = {"AdvEnt": list(rng.uniform(0, 1, 16)), "DADA": [float("nan")] + list(rng.uniform(0, 1, 15))}
    read_back(figures.iou_bar_chart(series, CLASSES_16.names, tmp_path / "bars.png",
                                    errors={"DADA": [0.05] * 16}, summary={"AdvEnt": 0.4, "DADA": 0.42}))
    read_back(figures.depth_range_chart({"a": {"near": 0.3, "middle": 0.2, "far": 0.1}}, tmp_path / "r.png"))
    metrics = tmp_path / "metrics.jsonl"
    lines = [json.dumps({"kind": "train", "iteration": i, "loss": {"seg": 2 / (i + 1)}}) for i in range(20)]
    metrics.write_text("\n".join(lines) + '\n{"kind": "train", "iter')  # a line cut by a kill
    read_back(figures.training_curves(metrics, tmp_path / "curves.png"))
    flat = tmp_path / "flat.jsonl"
    flat.write_text("".join(json.dumps({"iteration": i, "loss_seg": 1.0 / (i + 1), "loss_adv": 0.5}) + "\n"
                            for i in range(5)))
    assert set(figures.loss_series(figures.read_metrics(flat))) == {"loss_seg", "loss_adv"}
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(DadaError):
        figures.training_curves(empty, tmp_path / "none.png")
    assert not (tmp_path / "none.png").exists()


def test_training_curves_plot_the_pseudo_label_weight(tmp_path):
    """Self-training's statistics get panels of their own (NaN and unlisted stats left out), so a teacher
    that is never confident shows in the figure, not only in the health table."""
    metrics = tmp_path / "metrics.jsonl"
    records = [{"kind": "train", "iteration": i, "loss": {"seg_mix": 0.1},
                "stats": {"pseudo_weight": i / 10, "lr_ratio": 3.0,
                          "mix_removed_by_depth": float("nan") if i else 0.8}} for i in range(10)]
    metrics.write_text("".join(json.dumps(record) + "\n" for record in records))
    series = figures.stat_series(figures.read_metrics(metrics))
    assert set(series) == {"pseudo_weight", "mix_removed_by_depth"}
    assert series["pseudo_weight"] == (list(range(10)), [i / 10 for i in range(10)])
    assert series["mix_removed_by_depth"] == ([0], [0.8])
    with_stats = read_back(figures.training_curves(metrics, tmp_path / "with.png"))
    metrics.write_text("".join(json.dumps({"kind": "train", "iteration": i, "loss": {"seg_mix": 0.1}}) + "\n"
                               for i in range(10)))
    without = read_back(figures.training_curves(metrics, tmp_path / "without.png"))
    assert with_stats.shape[1] > without.shape[1]  # three panels in a row instead of one


def test_the_study_overlay_keeps_the_pseudo_label_weight(tmp_path):
    """The study reports' overlay plots the self-training statistics beside the losses, and keeps them when
    there are more losses than panels (a DACS run next to adversarial runs)."""
    dacs, adv = tmp_path / "dacs.jsonl", tmp_path / "adv.jsonl"

    def write(path, loss, stats=None):
        records = [{"kind": "train", "iteration": i, "loss": loss, **({"stats": stats(i)} if stats else {})}
                   for i in range(10)]
        path.write_text("".join(json.dumps(record) + "\n" for record in records))

    write(dacs, {"seg_src": 1.0, "seg_mix": 0.5}, lambda i: {"pseudo_weight": i / 10})
    write(adv, {"seg_src": 1.0, **{f"d_loss_{k}": 0.7 for k in range(14)}})
    runs = {"DACS": dacs, "AdvEnt": adv}
    curves = {label: figures.read_metrics(path) for label, path in runs.items()}
    series = {label: figures.loss_series(records) for label, records in curves.items()}
    stats = {label: figures.stat_series(records) for label, records in curves.items()}
    panels = figures.overlay_panels(series, stats, with_evals=True, max_panels=12)
    assert len(panels) == 12 and panels[0] == "seg_src" and panels[-2:] == ["pseudo_weight", "val mIoU"]
    without = figures.overlay_panels(series, {"AdvEnt": stats["AdvEnt"]}, with_evals=False)
    assert "pseudo_weight" not in without and len(without) == 12
    with_stats = read_back(figures.training_curves_overlay(runs, tmp_path / "overlay.png"))
    assert with_stats.ndim == 3 and with_stats.std() > 0


def fake_results(label, seed, miou_values, *, preset="s7", num_classes=7, depth=True, nt=None, d_gain=None,
                 fraction=1.0):
    iou = list(miou_values)
    config = {"preset": preset, "seed": seed, "train": {"device": "cpu"}}
    return {"format": "dada-seg-results/1", "created": "now",
            "code_version": {"dada": "0", "git_commit": None},
            "model": {"label": label, "checkpoint": f"/runs/{label}/final.pt", "iteration": 1, "format": "x",
                      "depth": depth, "config_hash": config_hash(config),
                      "config_hash_without_seed": config_hash(config, without_seed=True), "preset": preset,
                      "method": preset, "seed": seed, "source_fraction": fraction},
            "dataset": {"name": "cityscapes", "root": "/d", "split": "val", "size": [32, 64]},
            "result": {"num_classes": num_classes, "class_names": list(CLASSES_7.names), "iou": iou,
                       "miou": float(np.nanmean(np.array(iou, dtype=float))), "miou13": None,
                       "pixel_accuracy": 0.5, "num_images": 2, "per_image": [], "protocol": {}},
            "negative_transfer": None if nt is None else {"rate": nt, "worse": 1, "images": 2,
                                                          "unmatched": 0},
            "d_gain": d_gain}


def test_results_markdown_layout_table2(tmp_path):
    results = fake_results("DADA", 0, [0.9, 0.7, 0.1, 0.7, 0.8, 0.4, 0.6], nt=0.05, d_gain=0.032)
    results["baseline"] = {"label": "source only", "checkpoint": "/s.pt", "depth": False,
                           "result": fake_results("s", 0, [0.8] * 7)["result"]}
    paths = write_results(tmp_path, results)
    md = paths["md"].read_text()
    assert ("| Model | Depth | flat | construction | object | nature | sky | human | vehicle | mIoU | "
            "D-Gain | NT rate |") in md
    assert "| DADA | ✓ | 90.0 | 70.0 | 10.0 | 70.0 | 80.0 | 40.0 | 60.0 | 60.0 | 3.2 | 5 |" in md
    assert "| source only |  | 80.0 |" in md
    assert json.loads(paths["json"].read_text())["d_gain"] == pytest.approx(0.032)
    assert "mIoU*" not in results_markdown(results)  # 7 classes: no 13-class subset


def test_config_hash_ignores_runtime_keys_and_optionally_seed():
    a = {"seed": 1, "model": {"arch": "tiny"}, "train": {"device": "cpu", "lr": 0.1}, "output": {"root": "r"}}
    b = copy.deepcopy(a)
    b["train"]["device"] = "cuda"
    b["output"]["root"] = "elsewhere"
    assert config_hash(a) == config_hash(b)
    c = copy.deepcopy(a)
    c["seed"] = 2
    assert config_hash(a) != config_hash(c)
    assert config_hash(a, without_seed=True) == config_hash(c, without_seed=True)
    c["train"]["lr"] = 0.2
    assert config_hash(a, without_seed=True) != config_hash(c, without_seed=True)
    assert config_hash(None) is None


def test_compare_groups_seeds_mean_std(tmp_path, capsys):
    folders = []
    specs = [("dada_s0", 0, [0.8, 0.6, 0.2, 0.7, 0.8, 0.4, 0.6], "s7", 0.1),
             ("dada_s1", 1, [0.9, 0.7, float("nan"), 0.7, 0.8, 0.4, 0.6], "s7", 0.3),
             ("advent_s0", 0, [0.8, 0.5, 0.1, 0.6, 0.8, 0.3, 0.5], "s2", None)]
    for label, seed, iou, preset, nt in specs:
        folder = tmp_path / label
        write_results(folder, fake_results(label, seed, iou, preset=preset, depth=preset == "s7", nt=nt))
        folders.append(folder)
    summary = compare_runs(folders, tmp_path / "cmp")
    groups = {g["label"]: g for g in summary["groups"]}
    assert set(groups) == {"s7", "s2"} and groups["s7"]["seeds"] == [0, 1]
    assert groups["s7"]["iou"][0] == pytest.approx(0.85) and groups["s7"]["iou_std"][0] == pytest.approx(
        np.std([0.8, 0.9], ddof=1))
    assert groups["s7"]["iou"][2] == pytest.approx(0.2) and groups["s7"]["iou_std"][2] is None  # one defined
    mious = [np.nanmean(np.array(s[2], dtype=float)) for s in specs[:2]]
    assert groups["s7"]["miou"] == pytest.approx(np.mean(mious))
    assert groups["s7"]["miou_std"] == pytest.approx(np.std(mious, ddof=1))
    assert groups["s7"]["negative_transfer"] == pytest.approx(0.2) and groups["s2"]["miou_std"] is None
    md = (tmp_path / "cmp" / "comparison.md").read_text()
    assert f"{100 * groups['s7']['miou']:.1f} ± {100 * groups['s7']['miou_std']:.1f}" in md
    assert "Table 3" in md
    read_back(tmp_path / "cmp" / "comparison.png")
    assert json.loads((tmp_path / "cmp" / "comparison.json").read_text())["groups"][0]["label"] == "s7"
    # the CLI: existing output folder, then --overwrite
    assert main(["compare", *map(str, folders), "--out", str(tmp_path / "cmp")]) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert main(["compare", *map(str, folders), "--out", str(tmp_path / "cmp"), "--overwrite"]) == 0
    assert "s7 (n=2)" in capsys.readouterr().out
    with pytest.raises(DadaError, match="results.json"):
        compare_runs([tmp_path / "nothing"])


def test_compare_with_labels_groups_by_label_not_by_config(tmp_path):
    """Given labels override the config-hash grouping: two seeds whose configs differ (a key added
    between their trainings) form one group; two fractions of one preset form two."""
    specs = [("a0", 0, [0.8] * 7, "s7"), ("a1", 1, [0.6] * 7, "s7"), ("f0", 0, [0.4] * 7, "s7")]
    folders = []
    for i, (name, seed, iou, preset) in enumerate(specs):
        results = fake_results(name, seed, iou, preset=preset, depth=True)
        results["model"]["config_hash_without_seed"] = f"hash{i}"  # three different configurations
        write_results(tmp_path / name, results)
        folders.append(tmp_path / name)
    plain = compare_runs(folders)
    assert len(plain["groups"]) == 3  # by configuration: nothing grouped
    labelled = compare_runs(folders, tmp_path / "cmp", labels=["DADA", "DADA", "DADA 10%"])
    groups = {g["label"]: g for g in labelled["groups"]}
    assert set(groups) == {"DADA", "DADA 10%"} and groups["DADA"]["seeds"] == [0, 1]
    assert groups["DADA"]["miou"] == pytest.approx(0.7) and groups["DADA 10%"]["miou"] == pytest.approx(0.4)
    assert "DADA 10% (n=1)" in (tmp_path / "cmp" / "comparison.md").read_text()
    with pytest.raises(DadaError, match="one label per run"):
        compare_runs(folders, labels=["DADA"])


def test_compare_computes_negative_transfer_and_d_gain_from_stored_results(tmp_path):
    def run(label, seed, preset, per_image, depth):
        results = fake_results(label, seed, [0.5] * 7, preset=preset, depth=depth)
        results["result"]["per_image"] = [{"name": n, "miou": v} for n, v in per_image.items()]
        results["result"]["miou"] = float(np.mean(list(per_image.values())))
        write_results(tmp_path / label, results)
        return tmp_path / label

    s1 = [run("s1_0", 0, "s1", {"a": 0.5, "b": 0.5}, False),
          run("s1_1", 1, "s1", {"a": 0.2, "b": 0.9}, False)]
    s2 = run("s2_0", 0, "s2", {"a": 0.6, "b": 0.4}, False)
    s7 = [run("s7_0", 0, "s7", {"a": 0.4, "b": 0.7}, True), run("s7_1", 1, "s7", {"a": 0.3, "b": 0.95}, True)]
    summary = compare_runs([*s1, s2, *s7], baseline=s1, counterpart=[s2])
    groups = {g["label"]: g for g in summary["groups"]}
    # seed 0: a 0.4 < 0.5 → 1 of 2; seed 1 (paired with the seed-1 baseline): none below → 0 of 2
    assert groups["s7"]["negative_transfer"] == pytest.approx(0.25)
    assert groups["s2"]["negative_transfer"] == pytest.approx(0.5)  # b 0.4 < 0.5
    assert groups["s1"]["negative_transfer"] is None  # the baseline itself
    # D-Gain of the depth-aware runs against the no-depth counterpart (one seed: used for both)
    assert groups["s7"]["d_gain"] == pytest.approx(np.mean([0.55 - 0.5, 0.625 - 0.5]))
    assert groups["s2"]["d_gain"] is None
