"""Byte-mutation fuzzing of the dataset readers (helpers; the tests are in test_fuzz_readers.py, the
10,000-case campaign in benchmarks/faults.py).

A real one-item dataset of each format is written (SYNTHIA PNG image / 16-bit label / 16-bit depth,
Cityscapes PNG / labelIds / disparity, Mapillary JPEG / palette PNG, a list file); each case mutates one
of its files (bit flips, overwritten, inserted or deleted bytes, truncation, a random header field),
reads the item through the public dataset API and checks the outcome: a :class:`DadaError`, or an item
whose arrays are well formed (the right shapes and dtypes, finite image values, labels that are train
ids or the ignore index, depth finite where the format has no invalid value). Anything else (another
exception, a crash, a hang, a malformed array) is a finding.
"""

from __future__ import annotations

import time
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dada.errors import DadaError

H, W = 16, 24
NUM_CLASSES = 16


@dataclass
class Target:
    name: str
    dataset: object  # rebuilt per case for list files
    path: Path
    original: bytes
    kind: str  # png | jpeg | text
    depth_finite: bool
    build: object = None  # a callable that builds the dataset (list-file targets)


@dataclass
class Report:
    cases: int = 0
    errors: int = 0  # DadaError (the expected refusal)
    decoded: int = 0  # a well-formed item
    findings: list = field(default_factory=list)
    slowest: float = 0.0
    slowest_case: str = ""
    per_target: dict = field(default_factory=dict)


def make_targets(root: Path) -> list[Target]:
    """Write one item per format under ``root`` and return the files to mutate."""
    from dada.data import build_dataset
    from dada.data.cityscapes import write_cityscapes
    from dada.data.classes import CITYSCAPES_TO_16, MAPILLARY_TO_7, SYNTHIA_TO_16
    from dada.data.mapillary import write_mapillary
    from dada.data.synthia import write_synthia

    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    labels = rng.choice(sorted(SYNTHIA_TO_16), (H, W)).astype(np.uint16)
    write_synthia(root / "synthia", "0000000.png", rgb, labels,
                  rng.uniform(1.0, 2000.0, (H, W)).astype(np.float32))
    (root / "synthia" / "train.txt").write_text("0000000.png\n")
    disparity = rng.integers(0, 30000, (H, W)).astype(np.uint16)
    write_cityscapes(root / "cityscapes", "val", "aachen", "aachen_000000_000019", rgb,
                     rng.choice(sorted(CITYSCAPES_TO_16), (H, W)).astype(np.uint8), disparity)
    write_mapillary(root / "mapillary", "validation", "key0000", rgb,
                    rng.choice(sorted(MAPILLARY_TO_7), (H, W)).astype(np.uint8))
    synthia = build_dataset("synthia", root / "synthia", "all", NUM_CLASSES, depth=True)
    cityscapes = build_dataset("cityscapes", root / "cityscapes", "val", NUM_CLASSES, depth=True)
    mapillary = build_dataset("mapillary", root / "mapillary", "validation", 7, size=(H, W))
    targets = []
    for dataset, depth_finite in ((synthia, True), (cityscapes, False)):
        record = dataset.records[0]
        for what in ("image", "label", "depth"):
            path = getattr(record, what)
            targets.append(Target(f"{dataset.dataset_name}/{what}", dataset, path, path.read_bytes(), "png",
                                  depth_finite))
    record = mapillary.records[0]
    targets.append(Target("mapillary/image", mapillary, record.image, record.image.read_bytes(), "jpeg",
                          True))
    targets.append(Target("mapillary/label", mapillary, record.label, record.label.read_bytes(), "png", True))
    list_file = root / "synthia" / "train.txt"
    targets.append(Target("synthia/list", None, list_file, list_file.read_bytes(), "text", True,
                          build=lambda: build_dataset("synthia", root / "synthia", "train", NUM_CLASSES,
                                                      depth=True)))
    return targets


def mutate(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    """One random mutation of ``data``."""
    out = bytearray(data)
    how = int(rng.integers(0, 8))
    if how == 0:  # flip 1-8 bits
        for _ in range(int(rng.integers(1, 9))):
            i = int(rng.integers(0, len(out)))
            out[i] ^= 1 << int(rng.integers(0, 8))
    elif how == 1:  # overwrite a run of bytes
        i, n = int(rng.integers(0, len(out))), int(rng.integers(1, 17))
        out[i:i + n] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif how == 2:  # truncate
        out = out[: int(rng.integers(0, len(out)))]
    elif how == 3:  # insert bytes
        i, n = int(rng.integers(0, len(out) + 1)), int(rng.integers(1, 33))
        out[i:i] = rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    elif how == 4:  # delete a run
        i, n = int(rng.integers(0, len(out))), int(rng.integers(1, 33))
        del out[i:i + n]
    elif how == 5 and kind == "png" and len(out) >= 33:  # a header field, with a valid CRC
        field_at = int(rng.choice([16, 20, 24, 25, 26, 27, 28]))  # width, height, depth, colour, ...
        if field_at in (16, 20):
            out[field_at:field_at + 4] = int(rng.choice([0, 1, 2, H, W, 2 ** 16, 2 ** 31 - 1, 2 ** 32 - 1])
                                              ).to_bytes(4, "big")
        else:
            out[field_at] = int(rng.integers(0, 256))
        out[29:33] = zlib.crc32(bytes(out[12:29])).to_bytes(4, "big")
    elif how == 6 and kind == "text":  # text-specific: random lines, NULs, invalid UTF-8, huge names
        pieces = [b"0000000.png", b"\x00", b"\xff\xfe", b"../" * 3, b"#", b"\n", b" ", b"x" * 300, b"\r\n"]
        chosen = rng.integers(0, len(pieces), int(rng.integers(1, 8)))
        out = bytearray(b"".join(pieces[int(k)] for k in chosen))
    elif how == 7 and kind == "png":  # inside a PNG chunk, CRC fixed (reaches the decoders past the checks)
        return _mutate_png_chunk(data, rng)
    else:  # duplicate a chunk of the file at a random place
        i, n = int(rng.integers(0, len(out))), int(rng.integers(1, 65))
        j = int(rng.integers(0, len(out) + 1))
        out[j:j] = out[i:i + n]
    return bytes(out)


def _png_chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    chunks, at = [], 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        chunks.append((data[at + 4:at + 8], data[at + 8:at + 8 + length]))
        at += 12 + length
    return chunks


def _png_bytes(chunks: list[tuple[bytes, bytes]]) -> bytes:
    out = bytearray(b"\x89PNG\r\n\x1a\n")
    for kind, body in chunks:
        out += len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")
    return bytes(out)


def _mutate_png_chunk(data: bytes, rng: np.random.Generator) -> bytes:
    """Change a PNG's content with valid CRCs: the pixel data (decompressed, mutated, recompressed), the
    header fields or a palette; or drop or repeat a chunk."""
    chunks = _png_chunks(data)
    if not chunks:
        return data
    choice = int(rng.integers(0, 4))
    if choice == 0:  # pixel data
        idat = b"".join(body for kind, body in chunks if kind == b"IDAT")
        try:
            raw = bytearray(zlib.decompress(idat))
        except zlib.error:
            return data
        for _ in range(int(rng.integers(1, 9))):
            if raw:
                raw[int(rng.integers(0, len(raw)))] = int(rng.integers(0, 256))
        if rng.random() < 0.3:  # a shorter or longer stream than the header promises
            cut = int(rng.integers(0, len(raw) + 1))
            raw = raw[:cut] if rng.random() < 0.5 else raw + raw[:cut]
        rest = [c for c in chunks if c[0] != b"IDAT"]
        at = next((i for i, c in enumerate(chunks) if c[0] == b"IDAT"), len(rest) - 1)
        return _png_bytes(rest[:at] + [(b"IDAT", zlib.compress(bytes(raw)))] + rest[at:])
    index = int(rng.integers(0, len(chunks)))
    kind, body = chunks[index]
    if choice == 1 and body:  # bytes of one chunk's body (IHDR fields, palette entries, ...)
        body = bytearray(body)
        for _ in range(int(rng.integers(1, 4))):
            body[int(rng.integers(0, len(body)))] = int(rng.integers(0, 256))
        chunks[index] = (kind, bytes(body))
    elif choice == 2 and len(chunks) > 1:  # drop a chunk
        del chunks[index]
    else:  # repeat a chunk
        chunks.insert(index, chunks[index])
    return _png_bytes(chunks)


def check_item(item: dict, target: Target) -> str | None:
    """None when the item is well formed, else what is wrong."""
    image = item.get("image")
    if (not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3
            or image.dtype != torch.float32):
        return f"image {getattr(image, 'shape', None)} {getattr(image, 'dtype', None)}"
    if not torch.isfinite(image).all():
        return "image has non-finite values"
    hw = tuple(image.shape[1:])
    label = item.get("label")
    if label is not None:
        if label.dtype != torch.int64 or tuple(label.shape) != hw:
            return f"label {tuple(label.shape)} {label.dtype} for image {hw}"
        bad = label[(label != 255) & ((label < 0) | (label >= NUM_CLASSES))]
        if bad.numel():
            return f"label values {bad.unique()[:5].tolist()} are not train ids"
    depth = item.get("depth")
    if depth is not None:
        if depth.dtype != torch.float32 or tuple(depth.shape) != (1, *hw):
            return f"depth {tuple(depth.shape)} {depth.dtype} for image {hw}"
        if target.depth_finite and not torch.isfinite(depth).all():
            return "depth has non-finite values"
        if target.depth_finite and (depth <= 0).any():
            return "inverse depth <= 0"
    return None


def run_case(target: Target, data: bytes, report: Report, case_id: str) -> None:
    target.path.write_bytes(data)
    started = time.perf_counter()
    outcome = "decoded"
    try:
        dataset = target.build() if target.build is not None else target.dataset
        item = dataset[0]
        problem = check_item(item, target)
        if problem:
            report.findings.append({"case": case_id, "target": target.name, "finding": problem})
            outcome = "finding"
    except DadaError:
        outcome = "error"
    except Exception as error:  # anything but our error is a finding
        report.findings.append({"case": case_id, "target": target.name,
                                "finding": f"{type(error).__name__}: {str(error)[:200]}"})
        outcome = "finding"
    seconds = time.perf_counter() - started
    if seconds > report.slowest:
        report.slowest, report.slowest_case = seconds, f"{case_id} {target.name}"
    if seconds > 5.0:
        report.findings.append({"case": case_id, "target": target.name, "finding": f"slow: {seconds:.1f} s"})
    report.cases += 1
    report.errors += outcome == "error"
    report.decoded += outcome == "decoded"
    counts = report.per_target.setdefault(target.name, {"cases": 0, "errors": 0, "decoded": 0})
    counts["cases"] += 1
    counts["errors"] += outcome == "error"
    counts["decoded"] += outcome == "decoded"


def fuzz(root: Path, cases: int, seed: int = 0) -> Report:
    """``cases`` mutations spread evenly over the targets (each file restored after its case)."""
    targets = make_targets(Path(root))
    rng = np.random.default_rng(seed)
    report = Report()
    for k in range(cases):
        target = targets[k % len(targets)]
        try:
            run_case(target, mutate(target.original, target.kind, rng), report, f"seed{seed}-{k}")
        finally:
            target.path.write_bytes(target.original)
    return report
