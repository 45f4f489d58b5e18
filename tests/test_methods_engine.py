"""The comparison methods through the engine: two iterations of each preset on tiny generated data, the
run folder, the checkpoint's method state, and resuming from it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from dada.config import load_config
from dada.engine import Trainer
from dada.engine.checkpoint import load_checkpoint
from test_train_data import tiny_overrides

SMALL = ["method.ndf=4", "method.patch_modes=2", "method.patch_size=16", "method.generator_ngf=4",
         "method.generator_blocks=1", "method.image_ndf=4", "train.image_every=0", "train.log_every=1",
         "data.source.batch_size=1", "data.target.batch_size=1", "train.checkpoint_every=1"]


def small(preset_method: str) -> list[str]:
    """SMALL less the method keys this method does not have (each method owns its settings)."""
    keys = set(load_config(f"synthia2cityscapes_{preset_method}").method.keys())
    return [o for o in SMALL if not o.startswith("method.") or o.split("=")[0][len("method."):] in keys]


EXTRA_MODULES = {"clan": {"classifier2", "discriminator"},
                 "adaptpatch": {"patch_classifier", "discriminators"},
                 "spigan": {"generator", "image_discriminator", "privileged"},
                 "spigan_nopi": {"generator", "image_discriminator"},
                 "oracle": set()}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("methods-data")
    tiny_overrides(folder, "tiny", "cityscapes")
    return folder


class SmallPerceptual(nn.Sequential):
    preprocess_mode = "lite"


@pytest.mark.parametrize("method", sorted(EXTRA_MODULES))
def test_comparison_preset_trains_and_resumes(method, data, tmp_path, monkeypatch):
    # φ's real ImageNet weights are tested in test_methods_spigan; here a small network stands in
    monkeypatch.setattr("dada.methods.spigan.imagenet_perceptual_network",
                        lambda: SmallPerceptual(nn.Conv2d(3, 4, 3, stride=4)))
    overrides = tiny_overrides(data, "tiny", "cityscapes")
    if method == "oracle":  # its source is the target's dataset, set by the preset
        overrides = [o for o in overrides if not o.startswith("data.source.")]
    cfg = load_config(f"synthia2cityscapes_{method}", [*overrides, *small(method), "train.max_iters=2",
                                                       f"output.root={tmp_path}"])
    run = Trainer(cfg).fit()
    train = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in train if r["kind"] == "train"]
    assert [r["iteration"] for r in train] == [0, 1]
    assert all(v == v for r in train for v in r["loss"].values())
    final = load_checkpoint(run / "checkpoints" / "final.pt")
    assert {k.split(".")[0] for k in final["method"]["extra_modules"]} == EXTRA_MODULES[method]
    if method == "adaptpatch":
        assert (run / "adaptpatch_modes.pt").is_file()
    # resume from iteration 1: the method's state comes back and the run completes identically
    (run / "checkpoints" / "final.pt").unlink()
    (run / "checkpoints" / "iter_0000002.pt").unlink()
    again = Trainer(cfg)
    resumed = again.fit()
    final_again = load_checkpoint(resumed / "checkpoints" / "final.pt")
    assert final_again["iteration"] == 2
    for key, value in final["method"]["extra_modules"].items():
        assert torch.allclose(final_again["method"]["extra_modules"][key].float(), value.float(),
                              atol=1e-5), key
