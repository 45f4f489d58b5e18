"""Never lose or corrupt a run (issue 13): each failing case of the report, reproduced and fixed.

Run locks, a finished run, learning-rate validation and the NaN guard, checkpoint digests and the
fallback, file permissions, non-UTF-8 names, OS errors, a partial metrics line, a broken pipe, weak
messages, SIGTERM and the running means after a resume.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from dada import DadaError
from dada.cli import main
from dada.config import load_config
from dada.engine import Trainer
from dada.engine import checkpoint as ckpt
from dada.engine.lock import Interrupted, RunLock
from test_train_data import tiny_overrides

FAST = ["method.ndf=8", "train.image_every=0", "train.log_every=1", "data.source.batch_size=1",
        "data.target.batch_size=1", "train.deterministic=true"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": str(Path(__file__).resolve().parents[1] / "src")}


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("reliability-data")
    tiny_overrides(folder, "tiny", "cityscapes")
    return folder


def args(data: Path, root: Path, *extra: str) -> list[str]:
    return [*tiny_overrides(data, "tiny", "cityscapes"), *FAST, f"output.root={root}", *extra]


def cfg(data: Path, root: Path, *extra: str):
    return load_config("benchmark_dada", args(data, root, *extra))


def tensors_equal(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


class SignalAt:
    """A dataset wrapper that sends ``signum`` to this process when item number ``at`` is read."""

    def __init__(self, dataset, at: int, signum=signal.SIGTERM):
        self.dataset, self.at, self.signum, self.reads = dataset, at, signum, 0

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, index):
        self.reads += 1
        if self.reads == self.at:
            os.kill(os.getpid(), self.signum)
        return self.dataset[index]


# ---------------------------------------------------------------------------------- 1. run folder lock
def test_a_live_run_folder_is_refused_naming_the_holder(data, tmp_path):
    config = cfg(data, tmp_path, "train.max_iters=2", "output.name=locked")
    with RunLock(tmp_path / "locked"):
        with pytest.raises(DadaError, match=rf"in use by process {os.getpid()} on host \S+"):
            Trainer(config).fit()
    assert not (tmp_path / "locked" / "config.yaml").exists()  # refused before writing anything
    Trainer(config).fit()  # released: it runs
    assert (tmp_path / "locked" / "checkpoints" / "final.pt").is_file()


def test_a_stale_lock_of_a_killed_process_does_not_block(tmp_path):
    code = ("import sys, time; from dada.engine.lock import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(tmp_path)], env=ENV, stdout=subprocess.PIPE)
    assert holder.stdout.readline().strip() == b"locked"
    with pytest.raises(DadaError, match=f"process {holder.pid}"):
        RunLock(tmp_path).acquire()
    holder.kill()
    holder.wait()
    assert f"pid={holder.pid}" in (tmp_path / ".lock").read_text()  # the killed holder's file is left
    with RunLock(tmp_path) as lock:  # and does not block
        assert lock.holder()["pid"] == str(os.getpid())


# ------------------------------------------------------------------------------ 2. a finished run
def test_a_finished_run_is_reported_complete_not_retrained(data, tmp_path, capsys):
    config = cfg(data, tmp_path, "train.max_iters=3", "output.name=done")
    run = Trainer(config).fit()
    final = run / "checkpoints" / "final.pt"
    before = final.read_bytes()
    for _, path in ckpt.iteration_checkpoints(run / "checkpoints"):
        path.unlink()
    argv = ["train", "benchmark_dada", *args(data, tmp_path, "train.max_iters=3", "output.name=done")]
    assert main(argv) == 0
    assert "already complete" in capsys.readouterr().out
    assert final.read_bytes() == before
    assert not ckpt.iteration_checkpoints(run / "checkpoints")  # nothing retrained


# ---------------------------------------------------------------- 4. learning rates and the NaN guard
@pytest.mark.parametrize("key,value", [("lr", "nan"), ("lr", "-1"), ("lr", "0"), ("lr_d", "nan"),
                                       ("lr_d", "-1"), ("lr_d", "inf")])
def test_learning_rates_must_be_finite_and_positive(data, tmp_path, key, value):
    with pytest.raises(DadaError, match=rf"train\.{key} must be a finite number > 0"):
        cfg(data, tmp_path, f"train.{key}={value}")


def test_no_checkpoint_ever_holds_a_non_finite_tensor(data, tmp_path):
    config = cfg(data, tmp_path, "train.max_iters=6", "train.checkpoint_every=1", "train.lr=1e30",
                 "output.name=diverged")
    with pytest.raises(DadaError, match="NaN|non-finite"):
        Trainer(config).fit()
    for _, path in ckpt.iteration_checkpoints(tmp_path / "diverged" / "checkpoints"):
        loaded = ckpt.load_checkpoint(path)
        assert not ckpt.non_finite_tensors({k: loaded[k] for k in ("model", "method")})
    payload = {"model": {"w": torch.tensor([1.0, float("nan")])}}
    with pytest.raises(DadaError, match=r"not writing .*1 tensors hold NaN or infinity \(model\.w\)"):
        ckpt.save_checkpoint(tmp_path / "x.pt", payload)
    assert not (tmp_path / "x.pt").exists()


# ----------------------------------------------------------------------- 5. checkpoint content digest
def _interrupted_run(data, root, name, at_item, *extra):
    """A run stopped by SIGTERM when item ``at_item`` of the source is read (checkpoint saved)."""
    from dada.engine.data import build_part

    config = cfg(data, root, "train.max_iters=6", "train.checkpoint_every=1", "train.keep_last=6",
                 f"output.name={name}", *extra)
    with pytest.raises(Interrupted):
        Trainer(config).fit(datasets={"source": SignalAt(build_part(config, "source"), at_item)})
    return config, root / name


def _flip(path: Path, count: int = 64) -> None:
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    start = len(data) // 3  # inside the tensor records
    for position in rng.choice(np.arange(start, start + 4096), size=count, replace=False):
        data[position] ^= 0xFF
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["flipped", "truncated", "empty"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous_one(data, tmp_path, capsys, damage):
    reference = Trainer(cfg(data, tmp_path, "train.max_iters=6", "output.name=reference")).fit()
    config, run = _interrupted_run(data, tmp_path, "damaged", 5)
    newest = ckpt.iteration_checkpoints(run / "checkpoints")[-1][1]
    if damage == "flipped":
        _flip(newest)
    elif damage == "truncated":
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    else:
        newest.write_bytes(b"")
    with pytest.raises(DadaError, match="corrupt|cannot be read|empty"):
        ckpt.load_checkpoint(newest)
    capsys.readouterr()
    Trainer(config).fit()
    err = capsys.readouterr().err
    assert f"resuming from iter_{int(newest.name[5:12]) - 1:07d}.pt instead" in err
    assert Path(str(newest) + ".corrupt").exists()
    final = ckpt.load_checkpoint(run / "checkpoints" / "final.pt")
    expected = ckpt.load_checkpoint(reference / "checkpoints" / "final.pt")
    assert tensors_equal(final["model"], expected["model"])


def test_a_flipped_byte_is_detected_even_where_torch_loads_the_file(tmp_path):
    path = tmp_path / "c.pt"
    ckpt.save_checkpoint(path, {"model": {"w": torch.arange(4096, dtype=torch.float32)}})
    raw = bytearray(path.read_bytes())
    offset = raw.find(np.arange(4096, dtype=np.float32)[1000:1004].tobytes())
    raw[offset + 1] ^= 0x01  # one bit of one float: the zip still loads
    path.write_bytes(bytes(raw))
    loaded = torch.load(path, weights_only=True)
    assert not torch.equal(loaded["model"]["w"], torch.arange(4096, dtype=torch.float32))
    with pytest.raises(DadaError, match="is corrupt: its content does not match its sha256"):
        ckpt.load_checkpoint(path)


# ------------------------------------------------------------------------ 6. permissions and fsync
def test_files_and_folders_follow_the_umask(tmp_path, monkeypatch):
    from dada import io

    old = os.umask(0o022)
    try:
        io.write_text(tmp_path / "a.txt", "x")
        io.save_torch(tmp_path / "b.pt", {"x": 1})
        io.write_image(tmp_path / "c.png", np.zeros((4, 4), np.uint8))
        folder = io.make_temp_dir(tmp_path, ".bench.tmp-")
        assert stat.S_IMODE((tmp_path / "a.txt").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "b.pt").stat().st_mode) == 0o644
        assert stat.S_IMODE((tmp_path / "c.png").stat().st_mode) == 0o644
        assert stat.S_IMODE(folder.stat().st_mode) == 0o755
        os.umask(0o077)
        io.write_text(tmp_path / "private.txt", "x")
        assert stat.S_IMODE((tmp_path / "private.txt").stat().st_mode) == 0o600
    finally:
        os.umask(old)
    synced = []
    monkeypatch.setattr(io, "fsync_dir", lambda folder: synced.append(Path(folder)))
    io.write_text(tmp_path / "d.txt", "x")
    assert synced == [tmp_path]  # the folder is synced after the rename


def test_make_benchmark_folder_is_readable_and_stale_temp_folders_are_removed(tmp_path):
    from dada.benchmark import make_benchmark

    stale = tmp_path / f".B.tmp-{os.uname().nodename.replace('-', '_')}-999999999-abc"
    (stale / "source").mkdir(parents=True)  # what a killed make-benchmark leaves
    old = os.umask(0o022)
    try:
        out = make_benchmark(tmp_path / "B", num_source=2, num_target_train=2, num_target_val=1,
                             size=(32, 64), workers=1, preview=False)
    finally:
        os.umask(old)
    assert not stale.exists()
    assert [p.name for p in tmp_path.iterdir()] == ["B"]
    assert stat.S_IMODE(out.stat().st_mode) == 0o755
    assert stat.S_IMODE((out / "benchmark.json").stat().st_mode) == 0o644


# ------------------------------------------------------------------------------ 7. non-UTF-8 names
BAD_NAME = os.fsdecode(b"caf\xe9_\xff")  # not valid UTF-8: Python holds it with surrogate escapes


def test_images_with_non_utf8_names_are_written(tmp_path):
    # in a child process: cv2.imwrite used to segfault on such a name, which would end the test session
    code = ("import os, sys, numpy as np; from dada import io; "
            "io.write_image(os.path.join(sys.argv[1], os.fsdecode(b'caf\\xe9_\\xff.png')), "
            "np.arange(48, dtype=np.uint8).reshape(4, 4, 3))")
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], env=ENV, capture_output=True)
    assert result.returncode == 0, (result.returncode, result.stderr.decode(errors="replace"))
    assert os.listdir(os.fsencode(tmp_path)) == [b"caf\xe9_\xff.png"]
    import cv2

    decoded = cv2.imdecode(np.frombuffer((tmp_path / f"{BAD_NAME}.png").read_bytes(), np.uint8), -1)
    assert np.array_equal(decoded, np.arange(48, dtype=np.uint8).reshape(4, 4, 3))


@pytest.mark.slow
def test_predict_and_figures_accept_non_utf8_names(data, tmp_path):
    run = Trainer(cfg(data, tmp_path, "train.max_iters=1", "output.name=p")).fit()
    inputs = tmp_path / "in"
    inputs.mkdir()
    rgb = (np.random.default_rng(0).random((32, 64, 3)) * 255).astype(np.uint8)
    from dada.io import write_image

    write_image(inputs / f"{BAD_NAME}.png", rgb)
    result = subprocess.run([sys.executable, "-m", "dada.cli", "predict", str(run), str(inputs), "--out",
                             str(tmp_path / "out"), "--device", "cpu"], env=ENV, capture_output=True)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    names = sorted(os.listdir(os.fsencode(tmp_path / "out")))
    assert b"caf\xe9_\xff_seg.png" in names and b"caf\xe9_\xff_overlay.png" in names
    from dada.evaluation.figures import qualitative_grid

    label = np.zeros((8, 8), np.int64)
    path = qualitative_grid([{"name": f"{BAD_NAME}.png", "image": np.zeros((8, 8, 3), np.uint8),
                              "label": label, "predictions": {"m": label}}], tmp_path / "grid.png", 16)
    assert Path(path).stat().st_size > 0
    from dada.evaluation.figures import iou_bar_chart

    chart = iou_bar_chart({f"model {BAD_NAME}": [0.5, 0.25]}, ["road", "car"], tmp_path / "bars.png",
                          title=f"run {BAD_NAME}")
    assert Path(chart).stat().st_size > 0


# ------------------------------------------------------------------------------------- 8. OS errors
@pytest.mark.parametrize("code,expected", [(errno.ENOSPC, "no space left on the device"),
                                           (errno.EROFS, "the file system is read-only"),
                                           (errno.EACCES, "permission denied")])
def test_os_errors_are_one_clear_message_and_older_checkpoints_survive(data, tmp_path, monkeypatch, capsys,
                                                                     code, expected):
    from dada import io

    real_write = io.write_bytes
    calls = {"n": 0}

    def failing(path, payload):  # the 3rd checkpoint write hits the error
        if Path(path).name.startswith("iter_"):
            calls["n"] += 1
            if calls["n"] == 3:
                with io.atomic_path(path) as tmp:
                    tmp.write_bytes(payload[: len(payload) // 2])
                    raise OSError(code, os.strerror(code), str(tmp))
        return real_write(path, payload)

    monkeypatch.setattr(io, "write_bytes", failing)
    argv = ["train", "benchmark_dada", *args(data, tmp_path, "train.max_iters=5", "train.checkpoint_every=1",
                                              "train.keep_last=5", "output.name=full")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err and "iter_0000003.pt" in err
    checkpoints = tmp_path / "full" / "checkpoints"
    assert [i for i, _ in ckpt.iteration_checkpoints(checkpoints)] == [1, 2]
    assert all(ckpt.load_checkpoint(p)["iteration"] == i for i, p in ckpt.iteration_checkpoints(checkpoints))
    assert not list(checkpoints.glob(".*tmp*"))  # the partial file is gone
    monkeypatch.setattr(io, "write_bytes", real_write)
    assert main(argv) == 0  # the space is back: it resumes


def test_a_read_only_output_folder_is_a_clear_error(data, tmp_path, capsys):
    if os.geteuid() == 0:  # root ignores permissions: use a read-only bind of the folder instead
        readonly = tmp_path / "ro"
        readonly.mkdir()
        if subprocess.run(["mount", "--bind", "-o", "ro", str(readonly), str(readonly)],
                          capture_output=True).returncode != 0:
            pytest.skip("root without mount: cannot make a read-only folder")
        subprocess.run(["mount", "-o", "remount,ro,bind", str(readonly)], check=True)
    else:
        readonly = tmp_path / "ro"
        readonly.mkdir(mode=0o555)
    try:
        assert main(["train", "benchmark_dada", *args(data, readonly, "train.max_iters=1")]) == 2
        err = capsys.readouterr().err
        assert str(readonly) in err and ("read-only" in err or "permission denied" in err)
        assert main(["make-benchmark", str(readonly / "B"), "--num-source", "2", "--num-target-train", "2",
                     "--num-target-val", "1", "--size", "32", "64", "--workers", "1"]) == 2
        err = capsys.readouterr().err
        assert "read-only" in err or "permission denied" in err
    finally:
        if os.geteuid() == 0:
            subprocess.run(["umount", str(readonly)], check=True)


# ----------------------------------------------------- 9. metrics.jsonl and the running means on resume
def test_partial_metrics_line_is_repaired_and_means_cover_the_whole_window(data, tmp_path):
    window = ("train.log_every=4",)
    reference = Trainer(cfg(data, tmp_path, "train.max_iters=6", "train.checkpoint_every=1",
                            "output.name=ref", *window)).fit()
    config, run = _interrupted_run(data, tmp_path, "cut", 3, *window)  # stopped inside the first window
    with open(run / "metrics.jsonl", "a") as handle:
        handle.write('{"kind": "train", "iteration": 3, "loss": {"seg_s')  # a full disk's partial line
    Trainer(config).fit()
    lines = (run / "metrics.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]  # every line parses
    expected = [json.loads(line) for line in (reference / "metrics.jsonl").read_text().splitlines()]
    assert [(r["iteration"], r.get("loss")) for r in records if r["kind"] == "train"] == \
           [(r["iteration"], r.get("loss")) for r in expected if r["kind"] == "train"]


# ------------------------------------------------------------------------------------ 10. broken pipe
@pytest.mark.slow
def test_list_into_a_closed_pipe_is_quiet():
    result = subprocess.run(f"'{sys.executable}' -m dada.cli train --list | head -1", shell=True, env=ENV,
                            capture_output=True, text=True)
    assert result.stdout.strip() and len(result.stdout.splitlines()) == 1
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


# -------------------------------------------------------------------------------------- messages
def test_checkpoint_messages_are_clean(tmp_path):
    empty = tmp_path / "final.pt"
    empty.write_bytes(b"")
    with pytest.raises(DadaError, match=r"is empty \(0 bytes\): it was cut off while being written"):
        ckpt.load_checkpoint(empty)
    evil = tmp_path / "iter_0000001.pt"
    with open(evil, "wb") as handle:
        pickle.dump({"format": ckpt.FORMAT, "x": Path("x")}, handle)
    with pytest.raises(DadaError) as caught:
        ckpt.load_checkpoint(evil)
    message = str(caught.value)
    assert "weights_only" not in message and "\x1b" not in message and "Unsupported" in message


def test_a_refused_eval_leaves_no_empty_folder(data, tmp_path):
    run = Trainer(cfg(data, tmp_path, "train.max_iters=1", "output.name=e")).fit()
    final = run / "checkpoints" / "final.pt"
    assert main(["eval", str(final), "--data", str(tmp_path / "missing"), "--device", "cpu"]) == 2
    assert not (run / "checkpoints" / "eval_final").exists()


@pytest.mark.slow
def test_sigterm_saves_a_checkpoint_says_so_and_resumes_bit_identically(data, tmp_path):
    command = [sys.executable, "-m", "dada.cli", "train", "benchmark_dada",
               *args(data, tmp_path, "train.max_iters=30", "train.checkpoint_every=0", "output.name=term")]
    process = subprocess.Popen(command, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "term" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()
        time.sleep(0.01)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 128 + signal.SIGTERM, err
    assert "stopped by SIGTERM after iteration" in err and "rerun the same command to resume" in err
    saved = ckpt.iteration_checkpoints(tmp_path / "term" / "checkpoints")
    assert len(saved) == 1 and 2 <= saved[0][0] < 30
    assert subprocess.run(command, env=ENV, capture_output=True).returncode == 0
    reference = Trainer(cfg(data, tmp_path, "train.max_iters=30", "train.checkpoint_every=0",
                            "output.name=ref")).fit()
    assert tensors_equal(ckpt.load_checkpoint(reference / "checkpoints" / "final.pt")["model"],
                         ckpt.load_checkpoint(tmp_path / "term" / "checkpoints" / "final.pt")["model"])
