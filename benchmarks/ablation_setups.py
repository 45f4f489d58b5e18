"""The study's set-ups and shared definitions (``benchmarks/ablation.py`` runs them,
``benchmarks/ablation_report.py`` writes their report): the paper's numbers, the set-up rows, a job (a set-up
resolved to a preset), run folders and what says a run is finished."""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO / "src") not in sys.path:
    sys.path.insert(0, str(REPO / "src"))

#: The paper's numbers (Synthia→Cityscapes, 16 classes, ResNet-101 unless said): Table 3 (mIoU per set-up),
#: Table 4 (DADA by % of source) and Table 1's mIoU (SPIGAN rows: VGG-16; "-": only mIoU* published).
PAPER_TABLE3 = {"S1": 32.2, "S2": 40.8, "S3": 40.7, "S4": 35.7, "S5": 38.0, "S6": 41.6, "S7": 42.6}
PAPER_TABLE4 = {0.1: 32.6, 0.3: 35.1, 0.5: 40.9, 0.7: 41.0, 1.0: 42.6}
PAPER_TABLE1 = {"spigan_nopi": (35.8, 41.2), "spigan": (36.8, 42.4), "adaptsegnet": (None, 45.9),
                "adaptpatch": (None, 46.3), "clan": (None, 47.8), "S2": (40.8, 47.6), "S7": (42.6, 49.8)}
QUICK_ITERS = 20


@dataclass(frozen=True)
class Setup:
    """One row: ``key`` names its folder and ``--only`` entry; ``method`` its methods.yaml entry."""

    key: str
    label: str
    method: str
    group: str  # core | table1 | table4
    overrides: tuple[str, ...] = ()
    flags: tuple[bool, bool, bool, bool] | None = None  # Table 3: surprisal, depth adapt, fusion, DADA fusion
    fraction: float | None = None


def _s(key: str, label: str, method: str, flags) -> Setup:
    return Setup(key, label, method, "core", flags=flags)


CORE = (
    _s("S1", "S1 (no adapt.)", "s1", (False, False, False, False)),
    _s("S2", "S2 (AdvEnt)", "s2", (True, False, False, False)),
    _s("S3", "S3", "s3", (True, False, True, False)),
    _s("S4", "S4", "s4", (False, True, False, False)),
    _s("S5", "S5", "s5", (False, True, True, False)),
    _s("S6", "S6", "s6", (True, True, True, False)),
    _s("S7", "S7 (DADA)", "s7", (True, True, True, True)),
    Setup("minent", "MinEnt", "minent", "core"),
    Setup("adaptsegnet", "AdaptSegNet", "adaptsegnet", "core"),
    Setup("oracle", "Oracle (target-trained)", "oracle", "core"),
)
TABLE1 = (
    Setup("clan", "CLAN", "clan", "table1"),
    Setup("adaptpatch", "AdaptPatch", "adaptpatch", "table1"),
    Setup("spigan_nopi", "SPIGAN-no-PI", "spigan_nopi", "table1"),
    Setup("spigan", "SPIGAN", "spigan", "table1"),
)
#: self-training (issue 27): DACS, and the depth-aware ladder DACS -> + depth supervision (dast_class) ->
#: + depth-ordered ClassMix (dast); dast without DADA's feature fusion; docs/self-training.md
SELFTRAINING = (
    Setup("dacs", "DACS", "dacs", "selftraining"),
    Setup("dast_class", "DACS + depth sup.", "dast_class", "selftraining"),
    Setup("dast", "dast (depth-ordered mix)", "dast", "selftraining"),
    Setup("dast_nofusion", "dast without fusion", "dast_nofusion", "selftraining"),
    Setup("dast_adv", "dast + DADA adv.", "dast_adv", "selftraining"),
    Setup("dast_corda", "dast + CorDA depth weighting", "dast_corda", "selftraining"),
)
#: Table 1's rows in the paper's order (SPIGAN pair, AdaptSegNet, AdaptPatch, CLAN, MinEnt, AdvEnt, DADA)
TABLE1_ORDER = ("spigan_nopi", "spigan", "adaptsegnet", "adaptpatch", "clan", "minent", "S2", "S7", "oracle")
#: the self-training table (beyond the paper): source only and DADA beside DACS and the dast ladder
SELFTRAINING_ORDER = ("S1", "S7", *(setup.key for setup in SELFTRAINING), "oracle")
#: Table 1 rows whose constants are not verified against their paper (docs/methods.md: the stored texts
#: stop after §1): the report's tables mark them with † and a footnote, never to be read as the paper's
UNVERIFIED = {"adaptpatch": "AdaptPatch's K, λ_d, λ_adv and patch grid", "spigan_nopi": "SPIGAN's α–δ",
              "spigan": "SPIGAN's α–δ"}
#: D-Gain pairs: (depth model, its no-depth counterpart)
DGAIN_PAIRS = (("S7", "S2"), ("spigan", "spigan_nopi"))
#: Table 3's steps, each one component added (paired by seed); every set-up is also paired with S1
TABLE3_STEPS = (("S3", "S2"), ("S5", "S4"), ("S6", "S3"), ("S6", "S5"), ("S7", "S6"), ("S7", "S2"))
DEFAULT_FRACTIONS = (0.1, 0.3, 0.5, 0.7)
#: settings whose study has its own report (``--doc``, ``--title`` defaults) and, for a target whose
#: licence keeps its frames out of git (CamVid: CC BY-NC, research use only), a qualitative figure that
#: stays in the runs folder instead of docs/figures
SETTING_REPORTS = {
    "benchmark_lite0": {"doc": "results-benchmark-v1.md",
                        "title": "Results on the built-in benchmark, version 1: "
                                 "the paper's Tables 1, 3 and 4"},
    "benchmark_v2_7": {"doc": "results-benchmark.md",
                       "title": "Results on the built-in benchmark, version 2 (the paper's 7 classes): "
                                "Tables 3 and 1"},
    "benchmark2camvid": {"doc": "results-camvid.md", "frames_in_git": False,
                         "title": "Results on real frames: the built-in synthetic source → CamVid",
                         "val": "CamVid val (101 real frames; the 16 predicted classes merged into CamVid's "
                                "11, dada.evaluation.classmap; the oracle predicts the 11 itself)"},
}
BENCHMARK_TITLE = "Results on the built-in benchmark: the paper's Tables 1, 3 and 4"
VAL_TEXT = "the benchmark's target validation images"


def fraction_setups(fractions) -> tuple[Setup, ...]:
    return tuple(Setup(f"S7_frac{round(100 * f):02d}", f"DADA {round(100 * f)}%", "s7", "table4",
                       overrides=(f"data.source.fraction={f}",), fraction=f) for f in fractions)


def say(message: str) -> None:
    print(f"[ablation {time.strftime('%H:%M:%S')}] {message}", flush=True)


# --------------------------------------------------------------------------------------------- set-ups
@dataclass
class Job:
    setup: Setup
    preset: str
    overrides: list[str]
    note: str = ""
    seeds: list[int] = field(default_factory=list)


def resolve(setup: Setup, setting: str, common: list[str]) -> Job:
    """The preset and overrides of ``setup``; raises LookupError(reason) when its preset does not exist."""
    from dada.config import load_config, split_preset
    from dada.errors import DadaError

    preset = f"{setting}_{setup.method}"
    try:
        split_preset(preset)
    except DadaError:
        if setup.key != "oracle":
            raise LookupError(f"preset {preset} does not exist yet (its method is not in "
                              f"dada/configs/methods.yaml)") from None
        # the oracle's definition: the source-only model trained on the target's labelled train split
        preset = f"{setting}_s1"
        target = load_config(preset, common).data.target
        size = "null" if target.size is None else f"[{','.join(str(int(v)) for v in target.size)}]"
        overrides = [f"data.source.name={target.name}", f"data.source.root={json.dumps(str(target.root))}",
                     f"data.source.split={target.split}", f"data.source.size={size}"]
        return Job(setup, preset, [*overrides, *setup.overrides],
                   note=f"{setting}_oracle does not exist yet: {preset} trained on the target's labelled "
                        f"{target.split} split")
    return Job(setup, preset, list(setup.overrides))


def run_dir(out: Path, job: Job, seed: int) -> Path:
    return out / "runs" / job.setup.key / f"seed{seed}"


def config_of(job: Job, seed: int, common: list[str], out: Path):
    from dada.config import load_config

    return load_config(job.preset, [*common, *job.overrides, f"seed={seed}",
                                    f"output.name=runs/{job.setup.key}/seed{seed}"])


def is_trained(folder: Path, max_iters: int) -> bool:
    try:
        summary = json.loads((folder / "train_summary.json").read_text())
    except (OSError, json.JSONDecodeError):
        return False
    final = folder / "checkpoints" / "final.pt"
    return int(summary.get("iterations", -1)) == int(max_iters) and final.is_file()


def is_evaluated(folder: Path) -> bool:
    results, final = folder / "results.json", folder / "checkpoints" / "final.pt"
    return results.is_file() and final.is_file() and results.stat().st_mtime >= final.stat().st_mtime


def logged_seconds_per_iter(folder: Path) -> float | None:
    """Median of the logged ``seconds_per_iter`` of a run (None without records)."""
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return None
    from dada.evaluation.figures import read_metrics

    values = [float(r["seconds_per_iter"]) for r in read_metrics(path)
              if r.get("kind") == "train" and isinstance(r.get("seconds_per_iter"), (int, float))]
    return statistics.median(values) if values else None


