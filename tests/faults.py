"""A file-system fault injector for tests: it counts the writes a piece of code makes under some
directories and makes the Nth fail with an OSError, as a full disk (ENOSPC), a failing disk
(EIO) or a permission change (EACCES) would (SQLite's I/O-error tests, in miniature).

A write is any of: opening a file for writing (builtins.open, io.open, os.open with a write
flag), each write, writelines and flush of such a file and its close once written to (the
close flushes), os.write, os.ftruncate,
os.sendfile (shutil's copies), os.fsync, os.replace, os.rename and os.mkdir (so os.makedirs
and Path.mkdir). Only paths under the given roots count; writes elsewhere (pytest's, Numba's
cache outside the roots) pass untouched. A failing write or os.write first writes half of its
data, as a disk that fills up midway does; a failing close closes the file first.

    with Faults([tmp_path]) as f: ...            # count: f.ops is [(op, path), ...]
    with Faults([tmp_path], 7, errno.EIO): ...   # the 7th write raises OSError(EIO)

Faults.stream counts a stream's writes too (a command's standard output).
"""
import builtins
import errno as errnos
import io
import os

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
_REAL = {name: getattr(os, name) for name in
         ("open", "write", "ftruncate", "sendfile", "fsync", "replace", "rename", "mkdir")}
_REAL_OPEN = builtins.open


def fd_path(fd):
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return ""


class Faults:
    """Counts writes under `roots`; with `fail_at` (1-based), the write of that number raises
    OSError(`err`). After the block: `ops` lists every write seen as (op, path) and `fired`
    is the (op, path) that failed, or None."""

    def __init__(self, roots, fail_at=None, err=errnos.ENOSPC):
        self.roots = [os.path.abspath(r) + os.sep for r in roots]
        self.fail_at, self.err = fail_at, err
        self.ops, self.fired = [], None

    # --- counting ------------------------------------------------------------------------------
    def under(self, path):
        if isinstance(path, int):
            path = fd_path(path)
        try:
            path = os.path.abspath(os.fsdecode(path))
        except TypeError:
            return False
        return any((path + os.sep).startswith(r) for r in self.roots)

    def point(self, op, path):
        """Count one write; True when this one is to fail."""
        self.ops.append((op, os.fsdecode(path) if not isinstance(path, int) else fd_path(path)))
        if len(self.ops) == self.fail_at:
            self.fired = self.ops[-1]
            return True
        return False

    def error(self, path=None):
        return OSError(self.err, os.strerror(self.err), *([os.fsdecode(path)] if path else []))

    def stream(self, write, name):
        """A stream's write method, counting each non-empty write as a write to `name`."""
        def counted(data):
            if len(data) and self.point("write", name):
                raise self.error()
            return write(data)
        return counted

    # --- the patched primitives ----------------------------------------------------------------
    def _open(self, file, mode="r", *args, **kwargs):
        writing = any(c in mode for c in "wax+")
        if not (writing and not isinstance(file, int) and self.under(file)):
            return _REAL_OPEN(file, mode, *args, **kwargs)
        if self.point("open", file):
            raise self.error(file)
        return _File(self, _REAL_OPEN(file, mode, *args, **kwargs), os.fsdecode(file))

    def _os_open(self, path, flags, *args, **kwargs):
        if flags & _WRITE_FLAGS and self.under(path) and self.point("open", path):
            raise self.error(path)
        return _REAL["open"](path, flags, *args, **kwargs)

    def _on_fd(self, op, fd):
        return self.under(fd) and self.point(op, fd)

    def _write(self, fd, data):
        if self._on_fd("write", fd):
            _REAL["write"](fd, bytes(data)[: len(data) // 2])
            raise self.error()
        return _REAL["write"](fd, data)

    def _ftruncate(self, fd, length):
        if self._on_fd("ftruncate", fd):
            raise self.error()
        return _REAL["ftruncate"](fd, length)

    def _sendfile(self, out_fd, in_fd, *args):
        if self._on_fd("sendfile", out_fd):
            raise self.error()
        return _REAL["sendfile"](out_fd, in_fd, *args)

    def _fsync(self, fd):
        fd = fd if isinstance(fd, int) else fd.fileno()
        if self._on_fd("fsync", fd):
            raise self.error()
        return _REAL["fsync"](fd)

    def _move(self, op):
        def move(src, dst, *args, **kwargs):
            if (self.under(src) or self.under(dst)) and self.point(op, dst):
                raise self.error(src)
            return _REAL[op](src, dst, *args, **kwargs)
        return move

    def _mkdir(self, path, *args, **kwargs):
        if self.under(path) and not os.path.isdir(path) and self.point("mkdir", path):
            raise self.error(path)
        return _REAL["mkdir"](path, *args, **kwargs)

    def __enter__(self):
        builtins.open = io.open = self._open
        patched = {"open": self._os_open, "write": self._write, "ftruncate": self._ftruncate,
                   "sendfile": self._sendfile, "fsync": self._fsync,
                   "replace": self._move("replace"), "rename": self._move("rename"),
                   "mkdir": self._mkdir}
        for name, f in patched.items():
            setattr(os, name, f)
        return self

    def __exit__(self, *exc):
        builtins.open = io.open = _REAL_OPEN
        for name, f in _REAL.items():
            setattr(os, name, f)


class _File:
    """A file opened for writing under the roots: its write, writelines, flush and close count."""

    def __init__(self, faults, f, path):
        self._faults, self._f, self._path, self._written = faults, f, path, False

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __iter__(self):
        return iter(self._f)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def write(self, data):
        self._written = True
        if self._faults.point("write", self._path):
            self._f.write(data[: len(data) // 2])
            raise self._faults.error()
        return self._f.write(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        if self._faults.point("flush", self._path):
            raise self._faults.error()
        return self._f.flush()

    def close(self):
        if self._f.closed:
            return
        if self._written and self._faults.point("close", self._path):
            try:  # the file is closed whatever the error: its buffer is lost
                self._f.close()
            except OSError:
                pass
            raise self._faults.error()
        self._f.close()
