"""Issue 28: never destroy, mix up or silently substitute a user's results (each test reproduces one
failure seen before the fix)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dada import DadaError, cli


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DADA_CACHE", str(tmp_path / "cache"))


# ------------------------------------------------------------------ 1: validate before deleting
def _previous_demo(root: Path) -> Path:
    out = root / "demo"
    (out / "seed0" / "S1_s1").mkdir(parents=True)
    (out / "demo.txt").write_text("dada demo output folder; safe to delete\n")
    (out / "seed0" / "S1_s1" / "results.json").write_text("{}")
    return out


@pytest.mark.parametrize("extra", [["train.max_iterz=5"], ["--jobs", "0"], ["--device", "nonsense"],
                                   ["--seeds", "0"], ["seed=-1"]])
def test_demo_overwrite_with_a_bad_argument_keeps_the_previous_demo(tmp_path, extra, capsys):
    out = _previous_demo(tmp_path)
    assert cli.main(["demo", "--quick", "--overwrite", "--out", str(out), *extra]) == 2
    assert "error" in capsys.readouterr().err
    assert (out / "seed0" / "S1_s1" / "results.json").is_file()


def test_overwrite_never_replaces_the_working_folder_or_its_parents(tmp_path, monkeypatch, capsys):
    work = _previous_demo(tmp_path)
    monkeypatch.chdir(work)
    for target in (".", "..", str(tmp_path)):
        assert cli.main(["demo", "--quick", "--overwrite", "--out", target]) == 2
        assert "working folder" in capsys.readouterr().err
    assert (work / "seed0" / "S1_s1" / "results.json").is_file()
    (work / "bench").mkdir()
    monkeypatch.chdir(work / "bench")
    assert cli.main(["make-benchmark", str(work), "--force", "--num-source", "10"]) == 2
    assert (work / "seed0" / "S1_s1" / "results.json").is_file()


def test_a_failing_demo_overwrite_puts_the_previous_folder_back(tmp_path, monkeypatch):
    import dada.demo as demo

    out = _previous_demo(tmp_path)

    def fail(*args, **kwargs):
        assert not (out / "seed0" / "S1_s1" / "results.json").exists()  # moved aside, not deleted
        (out / "partial").mkdir(parents=True)
        raise DadaError("simulated failure")

    monkeypatch.setattr(demo, "_run_demo", fail)
    with pytest.raises(DadaError, match="simulated"):
        demo.run_demo(out, quick=True, overwrite=True)
    assert (out / "seed0" / "S1_s1" / "results.json").is_file() and not (out / "partial").exists()
    assert not list(tmp_path.glob(".demo.replaced-*"))
