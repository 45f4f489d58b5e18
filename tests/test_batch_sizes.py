"""Items of different sizes in one batch: a DadaError naming them (issue 28, item 6), also from a
data-loader worker process, where torch wraps the error in the worker's traceback."""

import pytest
import torch
from torch.utils.data import Dataset

from dada import DadaError
from dada.config import load_config
from dada.engine.data import infinite_loader


class MixedSizes(Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, index):
        size = (8, 8) if index % 2 else (8, 10)
        return {"image": torch.zeros(3, *size), "label": torch.zeros(size, dtype=torch.long),
                "name": f"frame_{index}.png"}


@pytest.mark.parametrize("workers", [0, 1])
def test_items_of_different_sizes_name_the_files(workers):
    cfg = load_config("benchmark_dada", [f"data.num_workers={workers}", "data.source.batch_size=2",
                                         "train.device=cpu"])
    batches = infinite_loader(MixedSizes(), cfg, "source", 0, torch.device("cpu"))
    with pytest.raises(DadaError) as error:
        next(batches)
    message = str(error.value)
    assert "data.source" in message and "frame_" in message and "data.source.size" in message
    assert "Traceback" not in message and "worker" not in message


def test_items_of_one_size_still_batch():
    class Same(MixedSizes):
        def __getitem__(self, index):
            return {"image": torch.full((3, 4, 4), float(index)), "name": f"f{index}.png"}

    cfg = load_config("benchmark_dada",
                      ["data.num_workers=0", "data.source.batch_size=2", "train.device=cpu"])
    batch = next(infinite_loader(Same(), cfg, "source", 0, torch.device("cpu")))
    assert batch["image"].shape == (2, 3, 4, 4) and len(batch["name"]) == 2


def test_an_empty_home_is_an_error_not_a_cache_at_the_root(monkeypatch):
    from dada.benchmark.cache import default_cache_dir

    monkeypatch.delenv("DADA_CACHE", raising=False)
    monkeypatch.setenv("HOME", "")
    with pytest.raises(DadaError, match="DADA_CACHE"):
        default_cache_dir()
    monkeypatch.setenv("DADA_CACHE", "/tmp/somewhere")
    assert str(default_cache_dir()) == "/tmp/somewhere"


def test_launcher_tracebacks_after_a_clear_error_are_dropped():
    """dada train --nproc: the rank's clear line passes, the other ranks' and torchrun's tracebacks not."""
    import io

    from dada.engine.distributed import filter_launcher_errors

    lines = ["W1203 setting OMP_NUM_THREADS\\n", "dada train: error: data.source: image a.png is empty\\n",
             "Traceback (most recent call last):\\n", '  File "x.py", line 1\\n',
             "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:\\n", "=" * 40 + "\\n",
             "dada train: error: data.source: image a.png is empty\\n", "[rank1]: Traceback ...\\n"]
    out = io.StringIO()
    errors = filter_launcher_errors(lines, out)
    assert out.getvalue() == lines[0] + lines[1] and errors == [lines[1]]
    assert filter_launcher_errors(["all fine\\n"], io.StringIO()) == []
