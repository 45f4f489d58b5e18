"""``dada train``: one run, a resumed run, or one run per seed with a mean ± std summary."""

from __future__ import annotations

from pathlib import Path

from dada.config import load_config
from dada.engine.trainer import Trainer, default_run_dir
from dada.errors import DadaError
from dada.evaluation.stats import mean_std
from dada.io import write_json, write_text


def parse_seeds(text: str) -> list[int]:
    try:
        seeds = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise DadaError(f"--seeds takes integers separated by commas, e.g. --seeds 0,1,2; "
                        f"got {text!r}") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise DadaError(f"--seeds needs distinct integers, got {text!r}")
    from dada.config import MAX_SEED

    if not all(0 <= seed <= MAX_SEED for seed in seeds):
        raise DadaError(f"--seeds: each seed must lie in 0..{MAX_SEED}, got {text!r}")
    return seeds


def resume(run_dir: str | Path, overrides: list[str] = ()) -> Path:
    """Continue the run in ``run_dir`` with its saved config (runtime keys such as train.device may be
    overridden)."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise DadaError(f"--resume {run_dir}: no config.yaml there; give a run folder written by dada train")
    cfg = load_config(run_dir / "config.yaml", overrides)
    warn_precision(cfg)
    return Trainer(cfg).fit(run_dir)


def warn_precision(cfg) -> None:
    """Warn when ``train.precision`` is emulated on the run's device (dada.devices.check_precision)."""
    from dada.devices import check_precision, resolve_device

    check_precision(resolve_device(cfg.train.device, "train.device"), cfg.train.precision)


def train_seeds(preset: str, overrides: list[str], seeds: list[int]) -> dict:
    """One run per seed in ``<run dir>/seed_<s>/`` (each resumable), then ``seeds_summary.json``/``.md``
    with the mean ± std of the final models' mIoU on the validation set."""
    first = load_config(preset, overrides)
    warn_precision(first)
    base = default_run_dir(first)
    rows = []
    for seed in seeds:
        cfg = load_config(preset, [*overrides, f"seed={seed}"])
        trainer = Trainer(cfg)
        run_dir = trainer.fit(base / f"seed_{seed}")
        rows.append({"seed": seed, "run": str(run_dir), "miou": final_miou(trainer, run_dir)})
    mean, std = mean_std(row["miou"] for row in rows)
    std = std or 0.0
    summary = {"preset": preset, "overrides": list(overrides), "runs": rows, "miou_mean": mean,
               "miou_std": std, "selection": trainer.cfg.eval.selection}
    write_json(base / "seeds_summary.json", summary)
    lines = [f"# {preset}: {len(rows)} seeds", "", "| seed | mIoU (%) |", "|---|---|"]
    lines += [f"| {row['seed']} | {100 * row['miou']:.2f} |" for row in rows]
    lines += ["", f"mean ± std (ddof=1): **{100 * summary['miou_mean']:.2f} ± {100 * std:.2f}**",
              f"model selection: {summary['selection']}", ""]
    write_text(base / "seeds_summary.md", "\n".join(lines))
    return summary


def final_miou(trainer: Trainer, run_dir: Path) -> float:
    """mIoU of ``checkpoints/final.pt`` on ``data.val``."""
    from dada.engine import checkpoint as ckpt
    from dada.engine.data import build_part

    final = ckpt.load_checkpoint(run_dir / "checkpoints" / "final.pt")
    trainer.model.load_state_dict(final["model"])
    return trainer.evaluate(build_part(trainer.cfg, "val"))
