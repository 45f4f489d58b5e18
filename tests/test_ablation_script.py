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
        yield module
    finally:
        sys.modules.pop(spec.name, None)


SMALL = ["--override", "data.benchmark.num_source=16", "--override", "data.benchmark.num_target_train=16",
         "--override", "data.benchmark.num_target_val=4", "--override", "data.benchmark.size=[48,96]",
         "--override", "model.arch=tiny", "--override", "model.pretrained=none"]


def test_small_study_end_to_end(ablation, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DADA_CACHE", str(tmp_path / "cache"))
    out, doc = tmp_path / "study", tmp_path / "docs" / "results.md"
    argv = ["--only", "S1,S7", "--iters", "6", "--seeds", "1", "--measure-steps", "1", "--out", str(out),
            "--doc", str(doc), *SMALL]
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
    assert "S7 (DADA)" in text and "S1 (no adapt.)" in text
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
    only = ["--only", "S1,S2,S7", "--seeds", "2", "--report-only", "--reading", str(reading)]
    assert ablation.main([*argv[2:], *only]) == 0
    assert not (out / "runs" / "S2").exists() and not (out / "runs" / "S7" / "seed1").exists()
    assert (out / "runs" / "S7" / "seed0" / "checkpoints" / "final.pt").stat().st_mtime == final
    text = doc.read_text()
    assert "S7 and S1 are two runs of six iterations" in text and "**S2** (no finished run" in text
    assert "| S7 (DADA) |" in text and "| 1 | 42.6 |" in text  # one seed of S7; the paper's S7
    assert ablation.main([*argv[2:], "--only", "S2", "--report-only"]) == 2  # nothing finished: an error
    # a Table-4-only report (its runs stand in for a 10 % fraction here) plots the fractions' curves
    shutil.copytree(out / "runs" / "S7" / "seed0", out / "runs" / "S7_frac10" / "seed0")
    table4 = ["--sets", "table4", "--only", "S7_frac10", "--seeds", "1", "--report-only"]
    assert ablation.main([*argv[2:], *table4]) == 0
    assert "Table 4" in doc.read_text()
    assert cv2.imread(str(doc.parent / "figures" / "results" / "training_curves.png")) is not None


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
