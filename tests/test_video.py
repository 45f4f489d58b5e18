"""`dada predict` on videos: an overlay video per input (depth side by side on request), undecodable frames
reported and skipped, a video that cannot be opened refused before anything is written."""

from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from conftest import save_tiny_checkpoint
from dada.cli import main
from dada.deploy.predict import predict_checkpoint
from dada.models import build_segmenter

SIZE = (48, 64)  # (H, W) of the test videos
FRAMES = 8


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return save_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), (32, 48))


def write_video(path: Path, fourcc: str, frames: int = FRAMES) -> Path:
    """A small video with moving colour blocks, written by OpenCV."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, (SIZE[1], SIZE[0]))
    assert writer.isOpened(), f"OpenCV cannot write {fourcc} here"
    rng = np.random.default_rng(0)
    for index in range(frames):
        frame = np.zeros((*SIZE, 3), np.uint8)
        frame[:, : 8 + 6 * index] = (40, 160, 90)
        frame[SIZE[0] // 2:] = (200, 80, 30)
        writer.write(np.clip(frame + rng.integers(0, 30, frame.shape), 0, 255).astype(np.uint8))
    writer.release()
    return path


def read_frames(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.parametrize(("fourcc", "suffix"), [("mp4v", ".mp4"), ("MJPG", ".avi"), ("mp4v", ".mkv")])
def test_overlay_video_of_each_container(checkpoint, tmp_path, fourcc, suffix, capsys):
    video = write_video(tmp_path / f"clip{suffix}", fourcc)
    out = tmp_path / "out"
    assert main(["predict", str(checkpoint), str(video), "--out", str(out), "--device", "cpu"]) == 0
    printed = capsys.readouterr()
    assert f"{FRAMES} frames" in printed.out and "frames/s" in printed.out
    assert "frame" in printed.err  # the tqdm bar
    frames = read_frames(out / "clip_overlay.mp4")
    assert len(frames) == FRAMES and frames[0].shape == (*SIZE, 3)
    # the overlay blends the frame: it differs from a plain segmentation and from the input
    source = read_frames(video)
    assert np.abs(frames[3].astype(int) - source[3].astype(int)).mean() > 5
    assert sorted(p.name for p in out.iterdir()) == ["clip_overlay.mp4", "predict.json"]


def test_depth_side_by_side_and_batching(checkpoint, tmp_path):
    video = write_video(tmp_path / "clip.mp4", "mp4v")
    one = predict_checkpoint(checkpoint, [video], tmp_path / "one", device="cpu", progress=False,
                             depth_video=True)
    four = predict_checkpoint(checkpoint, [video], tmp_path / "four", device="cpu", progress=False,
                              depth_video=True, batch_size=4)
    assert one["videos"][0]["frames"] == four["videos"][0]["frames"] == FRAMES
    first = read_frames(tmp_path / "one" / "clip_overlay.mp4")
    assert first[0].shape == (SIZE[0], 2 * SIZE[1], 3)  # overlay | depth
    depth_half = first[0][:, SIZE[1]:]
    assert depth_half.std() > 1  # a depth map, not a blank panel
    second = read_frames(tmp_path / "four" / "clip_overlay.mp4")
    assert max(np.abs(a.astype(int) - b.astype(int)).max() for a, b in zip(first, second, strict=True)) <= 2


def test_undecodable_frames_are_reported_not_fatal(checkpoint, tmp_path, capsys):
    video = write_video(tmp_path / "clip.avi", "MJPG")
    data = bytearray(video.read_bytes())
    # one JPEG per frame: find each start-of-image marker
    starts = [i for i in range(len(data) - 1) if data[i] == 0xFF and data[i + 1] == 0xD8]
    assert len(starts) == FRAMES
    data[starts[3]:starts[3] + 300] = bytes(300)  # frame 3 no longer decodes
    broken = tmp_path / "broken.avi"
    broken.write_bytes(bytes(data))
    assert main(["predict", str(checkpoint), str(broken), "--out", str(tmp_path / "out"), "--device",
                 "cpu"]) == 0
    captured = capsys.readouterr()
    assert "1 frames could not be decoded" in captured.err and "frame indices 3" in captured.err
    assert f"{FRAMES - 1} frames" in captured.out and "1 undecodable" in captured.out
    assert len(read_frames(tmp_path / "out" / "broken_overlay.mp4")) == FRAMES - 1


def test_unopenable_video_and_missing_depth_head_write_nothing(checkpoint, tmp_path, capsys):
    image = tmp_path / "a.png"
    cv2.imwrite(str(image), np.full((20, 30, 3), 90, np.uint8))
    fake = tmp_path / "fake.mp4"
    fake.write_bytes(b"this is not a video at all")
    out = tmp_path / "out"
    command = ["predict", str(checkpoint), str(image), str(fake), "--out", str(out), "--device", "cpu"]
    assert main(command) == 2
    err = capsys.readouterr().err
    assert "fake.mp4" in err and "cannot open" in err and "Traceback" not in err
    assert not out.exists()

    net = build_segmenter(arch="tiny", num_classes=16, depth_head=False, feature_fusion=False)
    no_depth = tmp_path / "s1.pt"
    torch.save({"format": "dada-seg/1", "iteration": 1, "config": None, "model_spec": net.spec,
                "model": net.state_dict()}, no_depth)
    video = write_video(tmp_path / "clip.mp4", "mp4v", frames=2)
    assert main(["predict", str(no_depth), str(video), "--depth", "--out", str(out), "--device", "cpu"]) == 2
    assert "depth head" in capsys.readouterr().err and not out.exists()
