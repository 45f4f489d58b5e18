"""One process per run folder: an exclusive lock on ``<run>/.lock``, and a graceful stop on SIGTERM/SIGINT.

:class:`RunLock` takes ``fcntl.flock`` on the lock file and writes the holder (PID, host, start time)
into it. The kernel releases a ``flock`` when its process dies, however it dies (SIGKILL included), so
the lock file a killed run leaves behind never blocks a resume. Where ``flock`` is not supported (some
network file systems), the recorded holder is checked instead: a PID that no longer runs on this host
is a stale lock and is taken over.

:class:`StopSignals` turns the first SIGTERM or SIGINT into a request that the training loop honours
between iterations (it saves a checkpoint at the current iteration and says so); a second signal stops
at once.
"""

from __future__ import annotations

import errno
import os
import signal
import socket
import threading
import time
from pathlib import Path

from dada.errors import DadaError
from dada.io import display, make_dirs, os_errors, pid_alive

LOCK_NAME = ".lock"


class RunLock:
    """``with RunLock(run_dir):`` — refuses (DadaError naming the holder) if another process holds it."""

    def __init__(self, run_dir: str | os.PathLike):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_NAME
        self._fd: int | None = None

    def holder(self) -> dict[str, str]:
        """What the lock file says about its holder (``pid``, ``host``, ``started``); {} if unreadable."""
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return {}
        return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)

    def _refuse(self) -> DadaError:
        info = self.holder()
        who = (f"process {info.get('pid', '?')} on host {info.get('host', '?')} "
               f"(since {info.get('started', '?')})" if info else "another process")
        return DadaError(f"run folder {display(self.run_dir)} is in use by {who}: wait for it to finish, "
                         f"stop it, or choose another output.name")

    def acquire(self) -> RunLock:
        import fcntl

        make_dirs(self.run_dir)
        with os_errors(self.path):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise self._refuse() from None
            except OSError as error:  # no flock here (ENOLCK, EINVAL on some network file systems)
                if error.errno not in (errno.ENOLCK, errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                info = self.holder()
                if (info.get("host") == socket.gethostname() and info.get("pid", "").isdigit()
                        and int(info["pid"]) != os.getpid() and pid_alive(int(info["pid"]))):
                    raise self._refuse() from None
            record = (f"pid={os.getpid()}\nhost={socket.gethostname()}\n"
                      f"started={time.strftime('%Y-%m-%d %H:%M:%S %Z')}\n").encode()
            with os_errors(self.path):
                os.ftruncate(fd, 0)
                os.pwrite(fd, record, 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            try:
                os.ftruncate(self._fd, 0)
            except OSError:
                pass
            os.close(self._fd)  # closing releases the flock
            self._fd = None

    def __enter__(self) -> RunLock:
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Interrupted(KeyboardInterrupt):
    """Training stopped by a signal after saving a checkpoint; ``exit_code`` is 128 + the signal number."""

    def __init__(self, message: str, signum: int):
        super().__init__(message)
        self.message, self.exit_code = message, 128 + int(signum)


class StopSignals:
    """``with StopSignals() as stop:`` — ``stop.requested`` (the signal's name) after SIGTERM or SIGINT;
    a second signal raises KeyboardInterrupt at once. Handlers are installed only in the main thread and
    restored on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self):
        self.requested: str | None = None
        self.signum = 0
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested, self.signum = signal.Signals(signum).name, signum

    def __enter__(self) -> StopSignals:
        if threading.current_thread() is threading.main_thread():
            for signum in self.SIGNALS:
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()
