"""One writer per run directory: an advisory lock (flock) on RUN/.lock, held while a training
writes the directory. The kernel releases it when its process ends, however it ends, so a lock
left by a killed process is simply taken over; the file says who holds it, for the message."""
import contextlib
import fcntl
import json
import os
import socket
import time

from .errors import CannotWrite, UsageError
from .files import make_dirs

LOCK_FILE = ".lock"


class RunLock:
    """with RunLock(out): ... holds out/.lock, or raises UsageError naming the holder."""

    def __init__(self, out):
        self.out, self.path = out, os.path.join(out, LOCK_FILE)
        self._fd = None

    def __enter__(self):
        make_dirs(self.out)
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise CannotWrite(self.path, e) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read(fd)
            os.close(fd)
            raise UsageError(f"{self.out} is being written by another charrnn training "
                             f"({_describe(holder)}); wait for it to end, stop it, or train "
                             "into another --out") from None
        try:  # ours now, whoever held it before; a disk too full for this fails here
            os.ftruncate(fd, 0)
            os.write(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                     "since": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())
        except OSError as e:
            os.close(fd)
            raise CannotWrite(self.path, e) from None
        self._fd = fd
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(OSError):  # a stale pid left in the file misleads nobody:
            os.ftruncate(self._fd, 0)       # the lock is the flock, released by the close
        os.close(self._fd)  # releases the lock; the empty file stays (removing it would race)
        self._fd = None


def _read(fd):
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return {}


def _describe(holder):
    if not isinstance(holder, dict) or "pid" not in holder:
        return "process unknown"
    return f"pid {holder['pid']} on {holder.get('host', '?')}, since {holder.get('since', '?')}"
