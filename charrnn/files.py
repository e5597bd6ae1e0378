"""Writing files so that a failure loses nothing: a temporary file renamed into place
(atomic_write), a log line appended whole or not at all (append_line), folders made or a
one-line error (make_dirs), and a check that an output can be written before the work that
fills it. Every OSError of a write becomes errors.CannotWrite, naming the file."""
import contextlib
import os
import secrets
from pathlib import Path

from .errors import CannotWrite, UsageError


@contextlib.contextmanager
def atomic_write(path, fsync=True):
    """A binary file to write `path` through: a temporary file beside it, renamed over it only
    when the block ends without an error (and removed when it does not). With fsync, the data
    and then the rename reach the disk before the block returns."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "xb") as f:
            yield f
            f.flush()
            if fsync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as e:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(e, OSError):
            raise CannotWrite(path, e) from e
        raise
    if fsync:
        with contextlib.suppress(OSError):  # some systems cannot fsync a folder; renamed anyway
            fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def write_atomic(path, data, fsync=True):
    """Write the bytes `data` to `path` through atomic_write."""
    with atomic_write(path, fsync) as f:
        f.write(data)


def append_line(path, line):
    """Append `line` and a newline to the file `path` in one write; a write that fails is cut
    back off, so the file holds whole lines only."""
    data, size = memoryview((line + "\n").encode()), None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o666)  # as open(): umask
    except OSError as e:
        raise CannotWrite(path, e) from None
    try:
        size = os.fstat(fd).st_size
        while data:
            data = data[os.write(fd, data):]
    except OSError as e:
        if size is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, size)
        raise CannotWrite(path, e) from None
    finally:
        os.close(fd)


def make_dirs(path):
    """os.makedirs(path, exist_ok=True), or CannotWrite."""
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise CannotWrite(path, e) from None


def check_writable(path):
    """A one-line error now, not after the work, when `path` cannot be written."""
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path) or not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise UsageError(f"cannot write {path} (not a writable file location); choose "
                         "another -o")
