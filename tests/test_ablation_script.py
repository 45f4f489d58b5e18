"""benchmarks/ablation.py: a small study end to end (two set-ups, a few iterations), its reuse of finished
runs, its report, and the logic of its generated comparison lines."""

import importlib.util
import json
import shutil
import sys
from pathlib import Path

import cv2
import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("ablation_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        # the script is a runner over two sibling modules: the set-ups and the report writer
        for sibling in ("ablation_setups", "ablation_report"):
            for name, value in vars(sys.modules[sibling]).items():
                if not name.startswith("__"):
                    setattr(module, name, getattr(module, name, value))
        yield module
    finally:
        sys.modules.pop(spec.name, None)


SMALL = ["--override", "data.benchmark.num_source=16", "--override", "data.benchmark.num_target_train=16",
         "--override", "data.benchmark.num_target_val=4", "--override", "data.benchmark.size=[48,96]",
         "--override", "model.arch=tiny", "--override", "model.pretrained=none"]


@pytest.mark.slow
def test_small_study_end_to_end(ablation, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DADA_CACHE", str(tmp_path / "cache"))
    out, doc = tmp_path / "study", tmp_path / "docs" / "results.md"
    argv = ["--only", "S1,S7", "--iters", "6", "--seeds", "1", "--measure-steps", "1", "--out", str(out),
            "--doc", str(doc), *SMALL, "--override", "eval.every=3"]
    assert ablation.main(argv) == 0
    printed = capsys.readouterr().out
    assert "Estimated time left:" in printed and "benchmark_s7" in printed

    for key in ("S1", "S7"):
        folder = out / "runs" / key / "seed0"
        assert (folder / "checkpoints" / "final.pt").is_file() and (folder / "results.json").is_file()
    summary = json.loads((out / "ablation.json").read_text())
    s7 = json.loads((out / "runs" / "S7" / "seed0" / "results.json").read_text())
    assert summary["setups"]["S7"]["runs"][0]["miou"] == pytest.approx(s7["result"]["miou"])
    assert summary["setups"]["S7"]["aggregate"]["miou"] == pytest.approx(s7["result"]["miou"])
    gain = summary["d_gain"]
    assert gain == {}  # no S2 in this study: no D-Gain pair
    assert 0.0 <= summary["setups"]["S7"]["aggregate"]["negative_transfer"] <= 1.0  # against S1, same seed
    assert summary["plan"]["total_remaining_s"] > 0

    text = doc.read_text()
    for heading in ("Table 1 layout", "Table 3 layout", "Time per iteration", "Measured comparisons",
                    "## Reading"):
        assert heading in text
    assert f"{100 * s7['result']['miou']:.1f}" in text
    # generated: S7 paired with S1 of its seed, its depth head and discriminator, mIoU during training
    assert "| S7 (DADA) − S1 (no adapt.) | 0: " in text and "| one seed |" in text
    health = summary["health"]["S7"]
    assert health["depth_abs_rel"] == [pytest.approx(s7["depth_quality"]["abs_rel"])]
    assert f"| S7 (DADA) | {s7['depth_quality']['abs_rel']:.3f} |" in text and "`d_depth_aware_src`" in text
    assert "S1" not in summary["health"]  # no depth head, no discriminator
    assert sorted(summary["val_during_training"]["S7"]["0"]) == ["3", "6"]  # eval.every=3 of 6 iterations
    assert "## Target mIoU during training (generated)" in text and "| Set-up | 3 | 6 |" in text
    assert "## Where the pixels went (generated)" in text and "| S7 (DADA) (n=1) | " in text
    assert {sh["a"] for sh in summary["class_shifts"]} == {"S7"} and len(summary["class_shifts"]) == 3
    assert "S7 (DADA)" in text and "S1 (no adapt.)" in text
    assert "## Self-training" not in text  # no self-training run in this study
    for name in ("per_class_iou.png", "training_curves.png", "qualitative.png"):
        image = cv2.imread(str(doc.parent / "figures" / "results" / name))
        if name == "qualitative.png":  # needs S1, S2 and S7: not in this study
            assert image is None
            continue
        assert image is not None and image.std() > 0

    # a second invocation reuses both finished, evaluated runs: nothing left to do
    final = (out / "runs" / "S7" / "seed0" / "checkpoints" / "final.pt").stat().st_mtime
    assert ablation.main([*argv, "--plan-only"]) == 0
    assert "Estimated time left: 0.0 min" in capsys.readouterr().out
    assert (out / "runs" / "S7" / "seed0" / "checkpoints" / "final.pt").stat().st_mtime == final

    # --report-only trains nothing: S2 has no run, so it is left out and named; the reading goes in
    reading = tmp_path / "reading.md"
    reading.write_text("S7 and S1 are two runs of six iterations; nothing is resolved.\n")
    only = ["--only", "S1,S2,S7", "--seeds", "2", "--report-only", "--reading", str(reading),
            "--title", "A small study"]
    assert ablation.main([*argv[2:], *only]) == 0
    assert not (out / "runs" / "S2").exists() and not (out / "runs" / "S7" / "seed1").exists()
    assert (out / "runs" / "S7" / "seed0" / "checkpoints" / "final.pt").stat().st_mtime == final
    text = doc.read_text()
    assert "S7 and S1 are two runs of six iterations" in text and "**S2** (no finished run" in text
    assert text.startswith("# A small study\n")
    assert "| S7 (DADA) |" in text and "| 1 | 42.6 |" in text  # one seed of S7; the paper's S7
    assert ablation.main([*argv[2:], "--only", "S2", "--report-only"]) == 2  # nothing finished: an error
    # a Table-4-only report (its runs stand in for a 10 % fraction here) plots the fractions' curves
    shutil.copytree(out / "runs" / "S7" / "seed0", out / "runs" / "S7_frac10" / "seed0")
    table4 = ["--sets", "table4", "--only", "S7_frac10", "--seeds", "1", "--report-only"]
    assert ablation.main([*argv[2:], *table4]) == 0
    assert "Table 4" in doc.read_text()
    assert "Table 1 layout" not in doc.read_text()  # no Table 1 row: no empty table, no empty paper line
    assert cv2.imread(str(doc.parent / "figures" / "results" / "training_curves.png")) is not None
    # a self-training run (S1's stands in for DACS here) gets the per-class self-training table
    shutil.copytree(out / "runs" / "S1" / "seed0", out / "runs" / "dacs" / "seed0")
    selftraining = ["--sets", "core,selftraining", "--only", "S1,S7,dacs", "--seeds", "1", "--report-only"]
    assert ablation.main([*argv[2:], *selftraining]) == 0
    text = doc.read_text()
    table = text.split("## Self-training: per-class IoU (%)")[1].split("##")[0]
    for row in ("| S1 (no adapt.) (n=1) |", "| S7 (DADA) (n=1) |", "| DACS (n=1) |"):
        assert row in table


def test_missing_preset_is_skipped_with_its_reason(ablation):
    setup = ablation.Setup("clan_x", "CLAN-x", "no_such_method", "table1")
    with pytest.raises(LookupError, match="benchmark_no_such_method does not exist"):
        ablation.resolve(setup, "benchmark", [])


def test_oracle_trains_on_the_target(ablation):
    from dada.config import load_config

    oracle = next(s for s in ablation.CORE if s.key == "oracle")
    job = ablation.resolve(oracle, "benchmark", [])
    cfg = load_config(job.preset, job.overrides)
    assert cfg.data.source.name == cfg.data.target.name == "cityscapes"
    assert cfg.data.source.split == cfg.data.target.split
    assert not cfg.method.depth_supervision


def test_comparison_lines_need_a_gap_beyond_twice_the_spread(ablation):
    rows = {"A": {"label": "A", "miou": 0.40, "miou_std": 0.01},
            "B": {"label": "B", "miou": 0.30, "miou_std": 0.02},
            "C": {"label": "C", "miou": 0.33, "miou_std": 0.05},
            "D": {"label": "D", "miou": 0.50, "miou_std": None}}
    beats, within = ablation.comparison_lines(rows, ["A", "B", "C", "D"])
    assert beats == ["A (40.0) vs B (30.0): 10.0 points, twice the larger std 4.0"]
    assert [line.split(":")[0] for line in within] == ["A (40.0) vs C (33.0)", "C (33.0) vs B (30.0)"]
    verdicts = ablation.paper_agreement({"S1": rows["A"], "S2": rows["B"], "S3": rows["D"]},
                                        {"S1": 32.2, "S2": 40.8, "S3": 40.7})
    assert verdicts[0].endswith("reversed")  # the paper has S2 > S1; here S1 beats S2 beyond the spread
    assert all("one seed" in v for v in verdicts[1:])


def _groups(**mious):
    """``load_group``-shaped groups from {key: [miou of seed 0, seed 1, ...]}."""
    return {key: ([{"model": {"seed": seed}, "result": {"miou": m}} for seed, m in enumerate(values)], {})
            for key, values in mious.items()}


def test_paired_steps_resolve_only_a_consistent_difference(ablation):
    groups = _groups(S1=[0.10, 0.14, 0.12], S2=[0.12, 0.16, 0.13], S4=[0.13, 0.10, 0.12], S5=[0.10])
    steps = {(st["a"], st["b"]): st for st in ablation.paired_steps(groups, ["S1", "S2", "S4", "S5"])}
    assert list(steps) == [("S2", "S1"), ("S4", "S1"), ("S5", "S1"), ("S5", "S4")]
    s2 = steps[("S2", "S1")]
    assert [round(v, 4) for v in s2["per_seed"].values()] == [0.02, 0.02, 0.01]
    assert s2["verdict"] == "resolved: higher"  # +1.7 ± 0.6 points
    assert steps[("S4", "S1")]["verdict"] == "not resolved"  # +3, -4, 0 points
    assert steps[("S5", "S4")]["verdict"] == "one seed" and steps[("S5", "S4")]["std"] is None
    lines = ablation.paired_lines(list(steps.values()), {k: {"label": k} for k in groups})
    assert "| S2 − S1 | 0: +2.0, 1: +2.0, 2: +1.0 | +1.7 ± 0.6 | resolved: higher |" in lines


def test_val_curve_rows_pair_each_set_up_with_s1(ablation):
    curves = {"S1": {0: {200: 0.10, 400: 0.14}, 1: {200: 0.12, 400: 0.16}},
              "S2": {0: {200: 0.11, 400: 0.12}, 1: {200: 0.12, 400: 0.15}}}
    lines = ablation.val_curve_lines(curves, {"S1": {"label": "S1"}, "S2": {"label": "S2"}})
    assert lines[0] == "| Set-up | 200 | 400 |"
    assert lines[2] == "| S1 (n=2) | 11.0 ± 1.4 | 15.0 ± 1.4 |"
    assert lines[3] == "| S2 (n=2) | 11.5 ± 0.7 | 13.5 ± 2.1 |"
    assert lines[4] == "| S2 − S1, paired | +0.5 ± 0.7 | -1.5 ± 0.7 |"


def _result(seed: int, confusion: list[list[int]]) -> dict:
    import numpy as np

    from dada.evaluation.metrics import iou_from_confusion

    iou = [None if np.isnan(v) else float(v) for v in iou_from_confusion(np.array(confusion))]
    return {"model": {"seed": seed}, "result": {"class_names": ["road", "building", "sky"], "iou": iou,
                                               "confusion": confusion}}


def test_class_shifts_name_the_class_that_moved_and_where_its_pixels_went(ablation):
    # S1 keeps sky; S2 sends 90 % of the sky pixels to building at both seeds; road hardly moves
    s1 = [[[90, 10, 0], [0, 100, 0], [0, 20, 80]], [[88, 12, 0], [0, 100, 0], [0, 30, 70]]]
    s2 = [[[92, 8, 0], [0, 100, 0], [0, 90, 10]], [[90, 10, 0], [0, 100, 0], [0, 90, 10]]]
    groups = {"S1": ([_result(i, c) for i, c in enumerate(s1)], {}),
              "S2": ([_result(i, c) for i, c in enumerate(s2)], {})}
    shifts = ablation.class_shifts(groups, ["S1", "S2"], top=2)
    assert [(sh["a"], sh["class"]) for sh in shifts] == [("S2", "sky"), ("S2", "building")]
    sky = shifts[0]
    assert sky["delta"] < -0.5 and sky["seeds"] == 2 and len(sky["per_seed"]) == 2
    assert [name for name, _ in sky["went_a"]] == ["sky", "building"]  # the class itself, then the others
    assert sky["went_a"][1][1] == pytest.approx(0.9) and sky["went_s1"][0][1] == pytest.approx(0.75)
    lines = ablation.shift_lines(shifts, {"S1": {"label": "S1"}, "S2": {"label": "S2"}})
    assert lines[2].startswith("| S2 (n=2) | sky | ")
    assert "| sky 75 %, building 25 % | sky 10 %, building 90 % |" in lines[2]
    assert ablation.class_shifts({"S2": groups["S2"]}, ["S2"]) == []  # nothing to pair with


def test_rows_with_unverified_constants_carry_a_dagger_and_one_footnote(ablation):
    assert set(ablation.UNVERIFIED) <= {setup.key for setup in ablation.TABLE1}
    assert ablation.dagger("adaptpatch", "AdaptPatch") == "AdaptPatch†"
    assert ablation.dagger("clan", "CLAN") == "CLAN" and ablation.dagger("S7", "S7 (DADA)") == "S7 (DADA)"
    assert ablation.unverified_footnote(["S1", "clan"]) == []
    note = ablation.unverified_footnote(["spigan_nopi", "spigan", "adaptpatch", "S2"])
    assert note == ablation.unverified_footnote(["adaptpatch", "spigan"])  # the same text whatever the order
    assert note[0] == "" and note[1].startswith("† constants not verified against the paper")
    assert note[1].count("SPIGAN's α–δ") == 1 and "AdaptPatch's K, λ_d, λ_adv and patch grid" in note[1]
