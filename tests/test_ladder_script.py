"""benchmarks/ladder.py: the ladder's table from the ablation studies of its rungs (no training)."""

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "ladder.py"


@pytest.fixture(scope="module")
def ladder():
    spec = importlib.util.spec_from_file_location("ladder_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop(spec.name, None)


def study(folder: Path, setups: dict[str, list[float]]) -> Path:
    """An ablation.json as benchmarks/ablation.py writes it (the fields the ladder reads)."""
    folder.mkdir(parents=True)
    labels = {"S1": "S1 (no adapt.)", "S2": "S2 (AdvEnt)", "dacs": "DACS"}
    data = {"setups": {key: {"label": labels[key], "runs": [{"seed": s, "miou": m / 100, "folder": "x"}
                                                         for s, m in enumerate(mious)]}
                       for key, mious in setups.items()}}
    (folder / "ablation.json").write_text(json.dumps(data))
    return folder


def test_ladder_tables_pair_each_set_up_with_s1_of_its_seed(ladder, tmp_path, capsys):
    none = study(tmp_path / "none", {"S1": [50, 51, 52], "S2": [50.1, 51.1, 52.2], "dacs": [50, 49, 53]})
    full = study(tmp_path / "full", {"S1": [30, 31, 32], "S2": [28, 29, 30.5]})
    out, md = tmp_path / "ladder.json", tmp_path / "ladder.md"
    assert ladder.main(["--rung", f"none={none}", "--rung", f"full={full}", "--out", str(out),
                        "--md", str(md)]) == 0
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert result["rungs"] == ["none", "full"]
    s2_none, s2_full = result["minus_s1"]["S2"]["none"], result["minus_s1"]["S2"]["full"]
    assert s2_none["mean"] == pytest.approx(0.1333, abs=1e-3) and s2_none["verdict"] == "resolved: higher"
    assert s2_full["mean"] == pytest.approx(-1.8333, abs=1e-3) and s2_full["verdict"] == "resolved: lower"
    assert result["minus_s1"]["dacs"]["none"]["verdict"] == "not resolved"  # +0, -2, +1: inside the spread
    assert result["minus_s1"]["dacs"]["full"] is None  # not run on that rung
    assert "| S1 (no adapt.) | 51.0 ± 1.0 (n=3) | 31.0 ± 1.0 (n=3) |" in printed
    assert "| DACS | 50.7 ± 2.1 (n=3) | - |" in printed
    assert "| S2 (AdvEnt) | +0.1 ± 0.1 ▲ | -1.8 ± 0.3 ▼ |" in printed
    assert md.read_text().strip() == printed.strip()


def test_ladder_names_a_missing_or_bad_study(ladder, tmp_path, capsys):
    with pytest.raises(SystemExit, match="does not exist: run benchmarks/ablation.py"):
        ladder.main(["--rung", f"none={tmp_path / 'missing'}"])
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "ablation.json").write_text("{}")
    with pytest.raises(SystemExit, match="not an ablation.json"):
        ladder.main(["--rung", f"none={tmp_path / 'bad'}"])
    with pytest.raises(SystemExit):
        ladder.main(["--rung", "none"])
    assert "write NAME=FOLDER" in capsys.readouterr().err


def test_ladder_gathers_studies_and_pairs_with_any_baseline(ladder, tmp_path, capsys):
    preset = study(tmp_path / "preset", {"S1": [30, 31, 32], "S2": [28, 29, 30], "dacs": [33, 35, 34]})
    other = study(tmp_path / "other", {"S2": [31, 33, 32]})  # S2 under an override; S1 and DACS unchanged
    out = tmp_path / "l.json"
    assert ladder.main(["--rung", f"preset={preset}", "--rung", f"other={other},{preset}:S1+dacs",
                        "--baseline", "dacs", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["baseline"] == "dacs" and "minus_s1" not in result
    assert result["miou"]["S2"]["other"] == [[0, 31.0], [1, 33.0], [2, 32.0]]  # the first folder's S2
    assert result["sources"]["other"] == {"S2": str(other), "S1": str(preset), "dacs": str(preset)}
    assert ladder.main(["--rung", f"all={other},{preset}", "--out", str(out)]) == 0  # no keys: every set-up
    assert json.loads(out.read_text())["miou"]["S2"]["all"][0] == [0, 31.0]  # still the first folder's
    with pytest.raises(SystemExit, match="has no set-up S7"):
        ladder.main(["--rung", f"x={preset}:S1+S7"])
    assert result["minus_baseline"]["S2"]["preset"]["mean"] == pytest.approx(-5.0)
    assert result["minus_baseline"]["S2"]["other"]["mean"] == pytest.approx(-2.0)
    assert result["minus_baseline"]["S1"]["other"]["verdict"] == "resolved: lower"
    assert "Minus DACS of the same seed" in capsys.readouterr().out


def test_ladder_refuses_a_missing_baseline(ladder, tmp_path):
    one = study(tmp_path / "one", {"S1": [30, 31, 32]})
    with pytest.raises(SystemExit, match="baseline 'dacs' is on no rung"):
        ladder.main(["--rung", f"x={one}", "--baseline", "dacs"])
