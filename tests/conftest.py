"""Shared test settings: small, single-threaded, deterministic."""

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)


def save_tiny_checkpoint(folder, val_size: tuple[int, int]):
    """A tiny DADA segmenter saved as one of our checkpoints (format 1), for predict/export tests."""
    from dada.models import build_segmenter

    torch.manual_seed(0)
    net = build_segmenter(arch="tiny", num_classes=16, depth_head=True)
    path = folder / "tiny.pt"
    config = {"data": {"preprocess": "caffe", "val": {"name": "cityscapes", "size": list(val_size)}}}
    torch.save({"format": "dada-seg/1", "iteration": 3, "config": config, "model_spec": net.spec,
                "model": net.state_dict()}, path)
    return path
