"""File decoders that never return a bare ``None``: every failure is a :class:`DadaError` naming the file.

8-bit images and labels are read with Pillow, as the official loaders do. 16-bit PNGs (SYNTHIA
``GT/LABELS`` and ``Depth``, Cityscapes ``disparity``, folder depth) are read with OpenCV, because Pillow
silently truncates 3-channel 16-bit PNGs to 8 bits.
"""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from dada.errors import DadaError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _read_bytes(path: Path, what: str, size: int = -1) -> bytes:
    """The file's bytes (the first ``size`` when given); DadaError when it is missing, unreadable or empty."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(size)
    except FileNotFoundError:
        raise DadaError(f"{what} file {path} is missing: restore it, or remove its name from the "
                        f"split's list file") from None
    except OSError as error:
        raise DadaError(f"cannot read {what} file {path}: {error.strerror or error}") from None
    if not data:
        raise DadaError(f"{what} file {path} is empty (0 bytes): re-extract it from the dataset archive")
    return data


def open_pil(path: Path, what: str = "image") -> Image.Image:
    """Open and fully decode an image with Pillow; truncated or non-image files raise DadaError."""
    import io

    data = _read_bytes(path, what)
    try:
        image = Image.open(io.BytesIO(data))
        image.load()
    except Image.DecompressionBombError as error:
        raise DadaError(f"{what} file {path} is too large to decode safely: {error}") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DadaError(f"{what} file {path} is not a readable image ({error}): it is truncated or not an "
                        f"image; re-extract it from the dataset archive") from None
    return image


def read_rgb(path: Path) -> Image.Image:
    """An RGB Pillow image (``convert('RGB')`` as the official ``_load_img``)."""
    image = open_pil(path, "image")
    return image if image.mode == "RGB" else image.convert("RGB")


def read_label_pil(path: Path) -> np.ndarray:
    """A single-channel label image read with Pillow (palette PNGs give their indices), as an H×W array."""
    image = open_pil(path, "label")
    if image.mode not in ("L", "P", "I", "I;16", "I;16B", "I;16L", "1"):
        raise DadaError(f"label file {path} has {image.mode} pixels, expected a single-channel image of "
                        f"class ids (mode L, P or I;16)")
    return np.asarray(image)


def read_cv2(path: Path, what: str, flags: int = cv2.IMREAD_UNCHANGED) -> np.ndarray:
    """Decode with OpenCV from bytes; a file OpenCV cannot decode raises DadaError, never ``None``."""
    data = _read_bytes(path, what)
    _check_png_chunks(data, path, what)
    try:
        array = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), flags)
    except cv2.error as error:
        raise DadaError(f"{what} file {path} could not be decoded by OpenCV ({error.err}): it is "
                        f"truncated or not an image") from None
    if array is None or array.size == 0:
        raise DadaError(f"{what} file {path} could not be decoded by OpenCV: it is truncated or not an "
                        f"image; re-extract it from the dataset archive")
    return array


def _check_png_chunks(data: bytes, path: Path, what: str) -> None:
    """A PNG whose chunk lengths run past the end of the file is truncated or corrupt: refused before
    OpenCV allocates the (up to 4 GB) buffer a damaged length asks for (found by byte-mutation fuzzing)."""
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return
    at = 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at:at + 4], "big")
        if at + 12 + length > len(data):
            raise DadaError(f"{what} file {path} is not a readable PNG (a chunk runs past the end of the "
                            f"file): it is truncated or corrupt; re-extract it from the dataset archive")
        if data[at + 4:at + 8] == b"IEND":
            return
        at += 12 + length


def anydepth_gray(array: np.ndarray) -> np.ndarray:
    """What ``cv2.imread(path, cv2.IMREAD_ANYDEPTH)`` returns for a decoded PNG (BGR channel order).

    OpenCV's PNG reader asks libpng for ``png_set_rgb_to_gray_fixed(..., 29900, 58700)``; libpng turns
    these into 15-bit integer weights R 9797, G 19234, B 3737 (= 32768 − R − G) and computes, per pixel,
    ``(9797·R + 19234·G + 3737·B + 16384) >> 15`` at 16 bit (``>> 15`` without rounding at 8 bit); a
    pixel whose three channels are equal keeps that value exactly. Alpha is dropped. Single-channel
    arrays are returned unchanged. Reproduced here so that the result does not depend on how OpenCV was
    built (tests check it against OpenCV).
    """
    if array.ndim == 2:
        return array
    if array.ndim != 3 or array.shape[2] not in (3, 4):
        raise DadaError(f"cannot convert an array of shape {array.shape} to grayscale")
    # 32768 · 65535 + 16384 < 2**32: unsigned 32-bit arithmetic is exact
    blue, green, red = (array[:, :, i].astype(np.uint32) for i in range(3))
    weighted = red * np.uint32(9797)
    weighted += green * np.uint32(19234)
    weighted += blue * np.uint32(3737)
    if array.dtype == np.uint16:
        weighted += np.uint32(16384)
    weighted >>= np.uint32(15)
    equal = (red == green) & (red == blue)
    weighted[equal] = red[equal]
    return weighted.astype(array.dtype)


def _opencv_anydepth_matches() -> bool:
    """Whether this OpenCV build's ANYDEPTH grayscale is libpng's, as :func:`anydepth_gray` (checked
    once on a small 16-bit image with unequal channels)."""
    probe = np.random.default_rng(7).integers(0, 65536, (4, 16, 3)).astype(np.uint16)
    probe[0, :4] = probe[0, :4, :1]
    try:
        ok, encoded = cv2.imencode(".png", probe)
        decoded = cv2.imdecode(encoded, cv2.IMREAD_ANYDEPTH) if ok else None
    except cv2.error:
        return False
    return decoded is not None and np.array_equal(decoded, anydepth_gray(probe))


_ANYDEPTH_FAST: bool | None = None


def read_anydepth(path: Path, what: str = "depth") -> np.ndarray:
    """``cv2.imread(path, cv2.IMREAD_ANYDEPTH)`` semantics (single channel, 8 or 16 bit), as the official
    SYNTHIA ``get_depth``. Decodes with OpenCV's own ANYDEPTH path when this build is verified to give
    libpng's result, else decodes all channels and applies :func:`anydepth_gray`."""
    global _ANYDEPTH_FAST
    if _ANYDEPTH_FAST is None:
        _ANYDEPTH_FAST = _opencv_anydepth_matches()
    if _ANYDEPTH_FAST and Path(path).suffix.lower() == ".png":
        array = read_cv2(path, what, cv2.IMREAD_ANYDEPTH)
        if array.ndim == 2 and array.dtype in (np.uint8, np.uint16):
            return array
    return anydepth_gray(read_png16(path, what))


def read_png16(path: Path, what: str) -> np.ndarray:
    """A PNG (8 or 16 bit, 1-4 channels) as OpenCV decodes it with IMREAD_UNCHANGED (channels in BGR)."""
    array = read_cv2(path, what, cv2.IMREAD_UNCHANGED)
    if array.dtype not in (np.uint8, np.uint16):
        raise DadaError(f"{what} file {path} has {array.dtype} pixels, expected 8- or 16-bit integers")
    return array


_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}  # colour type → channels (palette: one index)


def png_header(path: Path, what: str = "image") -> tuple[int, int, int, int]:
    """(H, W, bit depth, channels) from a PNG's IHDR chunk (the first 33 bytes); DadaError naming the
    file when it is missing, empty or not a PNG."""
    head = _read_bytes(path, what, 33)
    if len(head) < 33 or not head.startswith(_PNG_SIGNATURE) or head[12:16] != b"IHDR" \
            or head[25] not in _PNG_CHANNELS:
        raise DadaError(f"{what} file {path} is not a readable PNG (bad header): it is truncated or not a "
                        f"PNG; re-extract it from the dataset archive")
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    return height, width, int(head[24]), _PNG_CHANNELS[head[25]]


def image_size(path: Path) -> tuple[int, int]:
    """(H, W) from the file header only (Pillow, lazy); DadaError if it is not an image."""
    try:
        with Image.open(path) as image:
            width, height = image.size
    except FileNotFoundError:
        raise DadaError(f"file {path} is missing") from None
    except (OSError, SyntaxError, ValueError) as error:
        raise DadaError(f"file {path} is not a readable image ({error})") from None
    return height, width


def list_files(folder: Path, suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[str]:
    """Sorted names of the files in ``folder`` with one of ``suffixes`` (case-insensitive); hidden
    files (such as the temporary files of an atomic write) are skipped."""
    try:
        names = os.listdir(folder)
    except FileNotFoundError:
        raise DadaError(f"folder {folder} does not exist") from None
    except NotADirectoryError:
        raise DadaError(f"{folder} is not a folder") from None
    suffixes = tuple(s.lower() for s in suffixes)
    return sorted(n for n in names if not n.startswith(".") and n.lower().endswith(suffixes)
                  and os.path.isfile(os.path.join(folder, n)))


def require_dir(path: Path, hint: str) -> Path:
    if not path.is_dir():
        raise DadaError(f"folder {path} does not exist: {hint}")
    return path
