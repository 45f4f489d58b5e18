"""`dada demo --quick` end to end: benchmark, three trainings, evaluations, the comparison table."""

import json

import cv2
import pytest
import torch

from dada import DadaError, cli
from dada.demo import run_demo


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DADA_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.mark.slow
def test_quick_demo_end_to_end(tmp_path, cache, capsys):
    out = tmp_path / "demo"
    assert cli.main(["demo", "--quick", "--out", str(out), "--jobs", "2", "--also", "dacs"]) == 0
    printed = capsys.readouterr().out
    assert "in 2 parallel processes" in printed
    for label in ("S1", "S2", "S7", "dacs"):
        assert f"training {label}" in printed
    assert "mIoU" in printed and "NT rate" in printed
    assert "Training health" in printed and "| S7 | d_depth_aware_src |" in printed
    assert "| S7 | depth AbsRel (source val) | " in printed
    for run in ("seed0/S1_s1", "seed0/S2_s2", "seed0/S7_s7", "seed0/dacs_dacs"):
        assert (out / run / "checkpoints" / "final.pt").is_file()
        assert (out / run / "results.json").is_file()
    chart = cv2.imread(str(out / "comparison" / "comparison.png"))
    assert chart is not None and chart.std() > 0
    table = (out / "comparison" / "comparison.md").read_text()
    assert "D-Gain" in table and table.count("benchmark_v2_7_s") >= 3 and "benchmark_v2_7_dacs" in table
    assert "| flat | construction |" in table  # version 2's headline: the paper's 7 classes
    # DACS is compared with S1 (its negative-transfer rate), like S2
    assert json.loads((out / "seed0/dacs_dacs/results.json").read_text())["result"]["miou"] >= 0
    assert any(cache.iterdir())  # the benchmark went to the configured cache, not the home folder

    # a second run reuses the finished trainings
    run_demo(out, quick=True, jobs=1, also=("dacs",))
    assert "training S1" in capsys.readouterr().out

    # one training at a time, with the same thread count, trains exactly the same models
    serial = tmp_path / "serial"
    run_demo(serial, quick=True, jobs=1, threads=1)
    for run in ("seed0/S1_s1", "seed0/S2_s2", "seed0/S7_s7"):
        a, b = (json.loads((root / run / "results.json").read_text())["result"] for root in (out, serial))
        assert a["miou"] == b["miou"] and a["iou"] == b["iou"] and a["confusion"] == b["confusion"]
    weights = [torch.load(root / "seed0/S7_s7/checkpoints/final.pt", weights_only=False)["model"]
               for root in (out, serial)]
    assert weights[0].keys() == weights[1].keys()
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def test_demo_refuses_zero_jobs(tmp_path, cache):
    with pytest.raises(DadaError, match="--jobs must be at least 1"):
        run_demo(tmp_path / "demo", quick=True, jobs=0)


def test_training_health_reads_the_last_half_and_skips_a_partial_line(tmp_path):
    from dada.demo import training_health

    lines = [json.dumps({"kind": "train", "iteration": i, "loss": {"seg_src": 1.0, "d_x_src": float(i)}})
             for i in range(10)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + '\n{"kind": "tra')
    (tmp_path / "results.json").write_text(json.dumps({"depth_quality": {"abs_rel": 0.2}}))
    health = training_health(tmp_path)
    assert health == {"d_x_src": 7.0, "depth_abs_rel": 0.2}  # iterations 5..9 of 0..9


def test_training_health_shows_the_pseudo_label_weight(tmp_path):
    """Issue 27: the health table gains self-training's pseudo-label weight (last-half mean); a NaN
    (dast's occlusion share before its first mix) is left out, a statistic never logged is absent."""
    from dada.demo import health_table, training_health

    lines = [json.dumps({"kind": "train", "iteration": i, "loss": {"seg_src": 1.0, "seg_mix": 0.1},
                         "stats": {"pseudo_weight": i / 10, "mix_removed_by_depth": float("nan") if i == 9
                                   else 0.5}}) for i in range(10)]
    (tmp_path / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    health = training_health(tmp_path)
    assert health["pseudo_weight"] == pytest.approx(0.7)  # 0.5..0.9
    assert health["mix_removed_by_depth"] == pytest.approx(0.5)
    assert "mix_depth_weight" not in health and health["depth_abs_rel"] is None
    table = health_table({"DACS": [tmp_path]})
    assert "| DACS | pseudo_weight (last half) | 0.700 |" in table and "pseudo-label weight" in table


def test_demo_refuses_a_folder_that_is_not_a_demo(tmp_path, cache):
    (tmp_path / "mine.txt").write_text("precious")
    with pytest.raises(DadaError, match="not a demo folder"):
        run_demo(tmp_path, quick=True)
    assert (tmp_path / "mine.txt").read_text() == "precious"


def test_demo_setups_default_version_2_and_refuses_unknown_setting_or_method():
    from dada.demo import DEFAULT_SETTING, demo_setups

    assert DEFAULT_SETTING == "benchmark_v2_7"
    assert demo_setups() == (("S1", "benchmark_v2_7_s1"), ("S2", "benchmark_v2_7_s2"),
                             ("S7", "benchmark_v2_7_s7"))
    assert demo_setups("benchmark_lite0", ["dacs"])[-1] == ("dacs", "benchmark_lite0_dacs")
    with pytest.raises(DadaError, match="no preset nosuch_s1.*--setting takes one of"):
        demo_setups("nosuch")
    with pytest.raises(DadaError, match="no preset benchmark_v2_7_nomethod"):
        demo_setups(also=["nomethod"])
    with pytest.raises(DadaError, match="--also 'dada'"):
        demo_setups(also=["dada"])
    with pytest.raises(DadaError, match="--also 'dacs'"):
        demo_setups(also=["dacs", "dacs"])


def test_demo_cli_names_a_bad_setting_before_writing(tmp_path, cache, capsys):
    assert cli.main(["demo", "--quick", "--out", str(tmp_path / "d"), "--setting", "nosuch"]) == 2
    assert "--setting takes one of" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
