"""Atomic file writing: a temporary file in the same folder, then a rename, then an fsync of the folder.

Nothing half-written is ever left under the final name, so a run killed at any moment leaves either the
old file or the new one. Files and folders get the permissions the umask allows (as ``open`` and
``mkdir`` would), not the private 0600/0700 of ``mkstemp``/``mkdtemp``. Any name the file system allows
works, including names that are not valid UTF-8 (Python keeps their bytes as surrogate escapes).
An operating-system error (a read-only folder, a full disk) is one :class:`DadaError` naming the path
and the cause.
"""

from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dada.errors import DadaError

#: Temporary folders of another host older than this (seconds) are left-overs (see ``make_temp_dir``).
STALE_TEMP_SECONDS = 86400.0


def current_umask() -> int:
    """The process's umask, read without changing it where /proc allows (threads may be running)."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def display(path: str | os.PathLike) -> str:
    """``path`` as printable text: bytes that are not UTF-8 (surrogate escapes) shown as U+FFFD, so that
    messages, titles and reports never fail on a name the file system allows."""
    text = os.fspath(path)
    if isinstance(text, bytes):
        return text.decode("utf-8", "replace")
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def os_error(error: OSError, path: str | os.PathLike, action: str = "write", *,
             own_name: bool = False) -> DadaError:
    """One clear :class:`DadaError` for an operating-system error on ``path`` (named as the error's own
    file name when it has one, unless ``own_name``: an atomic write names its final path)."""
    target = display(error.filename if getattr(error, "filename", None) and not own_name else path)
    if error.errno == errno.ENOSPC or error.errno == errno.EDQUOT:
        return DadaError(f"cannot {action} {target}: no space left on the device (disk or quota full); free "
                         f"some space and rerun the same command (files written before are intact)")
    if error.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
        cause = "the file system is read-only" if error.errno == errno.EROFS else "permission denied"
        return DadaError(f"cannot {action} {target}: {cause}; choose a writable folder or fix its "
                         f"permissions")
    return DadaError(f"cannot {action} {target}: {error.strerror or error}")


@contextlib.contextmanager
def os_errors(path: str | os.PathLike, action: str = "write", *, own_name: bool = False) -> Iterator[None]:
    """Turn an :class:`OSError` raised inside the block into :func:`os_error`'s DadaError."""
    try:
        yield
    except OSError as error:
        raise os_error(error, path, action, own_name=own_name) from None


def fsync_dir(folder: str | os.PathLike) -> None:
    """Make a rename in ``folder`` durable (a no-op where folders cannot be opened, e.g. Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


@contextlib.contextmanager
def removed_if_left_empty(folder: str | os.PathLike) -> Iterator[None]:
    """If ``folder`` does not exist before the block and the block fails, remove it when it is empty
    (a refused command leaves no empty output folder behind)."""
    folder = Path(folder)
    existed = folder.exists()
    try:
        yield
    except BaseException:
        if not existed:
            with contextlib.suppress(OSError):
                folder.rmdir()  # fails (and is left) unless empty
        raise


def make_dirs(folder: str | os.PathLike) -> Path:
    """``mkdir -p`` with our error."""
    folder = Path(folder)
    with os_errors(folder, "create the folder"):
        folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, else removed.

    The temporary name keeps the suffix of ``path`` so that writers which pick a format from the
    extension (OpenCV, matplotlib) behave as for the final name.
    """
    path = Path(path)
    make_dirs(path.parent)
    with os_errors(path, own_name=True):
        fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f"{path.suffix}.tmp{path.suffix}",
                                   dir=path.parent)
        try:
            os.fchmod(fd, 0o666 & ~current_umask())
        finally:
            os.close(fd)
    tmp_path = Path(tmp)
    try:
        try:
            yield tmp_path
        except OSError as error:
            raise os_error(error, path, own_name=True) from None
        with os_errors(path, own_name=True):
            with open(tmp_path, "rb+") as handle:
                os.fsync(handle.fileno())
            os.replace(tmp_path, path)
        fsync_dir(path.parent)
    finally:
        with contextlib.suppress(OSError):
            tmp_path.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as handle:
            handle.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    """UTF-8 text; characters that cannot be encoded (surrogate escapes of non-UTF-8 file names) are
    written as ``\\udcXX``, so the file is always valid UTF-8."""
    write_bytes(path, text.encode("utf-8", "backslashreplace"))


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def append_line(path: str | os.PathLike, line: str) -> None:
    """Append one line (``line`` without its newline) to a log file, with our error on a full disk."""
    with os_errors(path):
        with open(path, "a", encoding="utf-8", errors="backslashreplace") as handle:
            handle.write(line + "\n")


def torch_bytes(obj: Any) -> bytes:
    """``torch.save`` into memory (so that a full disk is an OSError of our write, not a C++ stream error)."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return buffer.getvalue()


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """``torch.save`` to ``path`` atomically."""
    write_bytes(path, torch_bytes(obj))


def write_image(path: str | os.PathLike, image: np.ndarray) -> None:
    """Write an image with OpenCV (BGR or single channel, 8- or 16-bit) atomically. The image is encoded
    in memory and written by Python, so any file name works (``cv2.imwrite`` crashes on some)."""
    import cv2

    path = Path(path)
    suffix = path.suffix.lower() or ".png"
    try:
        ok, encoded = cv2.imencode(suffix, image)
    except cv2.error as error:
        raise DadaError(f"could not encode image {display(path)} ({error.err}): check the "
                        f"extension") from None
    if not ok:
        raise DadaError(f"could not encode image {display(path)}: check the extension")
    write_bytes(path, encoded.tobytes())


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this machine."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, owned by someone else
        return True
    return True


def make_temp_dir(parent: str | os.PathLike, prefix: str) -> Path:
    """A new folder ``parent/<prefix><host>-<pid>-<random>`` with the umask's permissions (``mkdtemp``
    makes 0700).

    Folders with the same prefix left by a process that no longer runs (on this host; elsewhere: older
    than :data:`STALE_TEMP_SECONDS`) are removed first, so a kill never leaves one forever.
    """
    import socket

    parent = make_dirs(parent)
    host = socket.gethostname().replace("-", "_")
    now = time.time()
    with contextlib.suppress(OSError):
        for old in parent.iterdir():
            if not (old.name.startswith(prefix) and old.is_dir()):
                continue
            owner_host, _, rest = old.name[len(prefix):].partition("-")
            pid_text = rest.partition("-")[0]
            if owner_host == host and pid_text.isdigit():
                stale = not pid_alive(int(pid_text))
            else:
                stale = now - old.stat().st_mtime > STALE_TEMP_SECONDS
            if stale:
                shutil.rmtree(old, ignore_errors=True)
    with os_errors(parent, "create a folder in"):
        tmp = Path(tempfile.mkdtemp(prefix=f"{prefix}{host}-{os.getpid()}-", dir=parent))
        os.chmod(tmp, 0o777 & ~current_umask())
    return tmp


def check_replaceable(target: str | os.PathLike, option: str, *,
                      keep: tuple[str | os.PathLike, ...] = ()) -> Path:
    """Refuse to replace or delete ``target`` (for ``option``, e.g. ``--overwrite``) when it is the working
    folder, one of its parents, the home folder, the file-system root, or a parent of (or the same as) any
    path in ``keep`` (the command's own inputs). Returns ``target`` resolved."""
    resolved = Path(os.path.abspath(target))
    try:
        resolved = resolved.resolve()
    except OSError:
        pass
    cwd = Path.cwd().resolve()
    home = Path(os.path.expanduser("~")).resolve() if os.environ.get("HOME", "x") else None
    if resolved == cwd or resolved in cwd.parents:
        raise DadaError(f"{option}: refusing to replace {display(target)}: "
                        f"it is the working folder or one of "
                        f"its parents; give a sub-folder as the output")
    if resolved == Path(resolved.anchor) or (home is not None and resolved == home):
        raise DadaError(f"{option}: refusing to replace {display(target)} (the file-system root or the home "
                        f"folder); give a sub-folder as the output")
    for path in keep:
        other = Path(os.path.abspath(path)).resolve()
        if other == resolved or resolved in other.parents:
            raise DadaError(f"{option}: refusing to replace {display(target)}: it holds {display(path)}, an "
                            f"input of this command; choose another output folder")
    return resolved


class _LineStream:
    """A text stream for tqdm when the output is a file or a pipe: each update becomes one plain line
    (no carriage returns, no cursor moves, no blank clearing lines)."""

    def __init__(self, stream):
        self.stream = stream

    def write(self, text: str) -> int:
        import re

        line = re.sub(r"\x1b\[[0-9;]*[A-Za-z]", "", text).replace("\r", "").strip()
        if line:
            self.stream.write(line + "\n")
        return len(text)

    def flush(self) -> None:
        self.stream.flush()


#: Seconds between two progress lines when the output is not a terminal.
PROGRESS_LINE_SECONDS = 10.0


def progress_bar(*args: Any, file: Any = None, **kwargs: Any):
    """A ``tqdm`` bar on ``file`` (default stderr): a live bar in a terminal; in a file or a pipe one line
    every :data:`PROGRESS_LINE_SECONDS` and one at the end, instead of a wall of carriage returns."""
    import sys

    from tqdm import tqdm

    stream = file if file is not None else sys.stderr
    if stream is None:  # no stderr at all (a closed descriptor): no bar
        return tqdm(*args, disable=True, **kwargs)
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        return tqdm(*args, file=stream, **kwargs)
    kwargs.pop("dynamic_ncols", None)
    kwargs["mininterval"] = max(kwargs.get("mininterval", 0.1), PROGRESS_LINE_SECONDS)
    return tqdm(*args, file=_LineStream(stream), ascii=True, ncols=100, **kwargs)


def now_utc() -> str:
    """The current UTC time, ISO 8601 to the second (reports' time stamps)."""
    import datetime as _dt

    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
