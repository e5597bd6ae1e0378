"""Numba's disk cache, made safe against damaged files.

Numba keeps each kernel's compiled code in an index file (.nbi) and data files (.nbc) under the
cache directory: ``$NUMBA_CACHE_DIR`` when set, else ``__pycache__`` beside charrnn's sources,
else, when that is not writable (a read-only install), a user-wide directory
(``~/.cache/numba`` on Linux). A stale entry (charrnn's source changed, or another Numba) is
already recompiled by Numba; a damaged one (a truncated write, a disk error, garbage) makes it
raise while unpickling. Here any entry that cannot be read is treated as missing: the kernel is
compiled again and the entry rewritten. An entry that cannot be written (a full disk, a
read-only folder) is left out, with one warning line per process: Numba itself would raise,
ending the command that only wanted the kernel.

Numba stamps an entry with its own source file only, yet a kernel's compiled code holds a copy
of every kernel it calls, from other files: an edit to packed.py would leave every caller's
entry running the old product. So entries here are stamped with every kernel source as well
(KERNEL_SOURCES): an edit to any of them compiles them all again.
"""
import os
import sys
from functools import lru_cache

from numba.core.caching import FunctionCache, IndexDataCacheFile

_warned = []  # the folder already warned about, once per process
_PACKAGE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KERNEL_SOURCES = ("kernels", "cells.py")  # under charrnn/: what compiled code is built from


@lru_cache(maxsize=None)
def _sources_stamp():
    """(path, mtime, size) of every kernel source: part of every entry's stamp."""
    paths = []
    for name in KERNEL_SOURCES:
        root = os.path.join(_PACKAGE, name)
        paths += ([os.path.join(root, f) for f in sorted(os.listdir(root)) if f.endswith(".py")]
                  if os.path.isdir(root) else [root])
    return tuple((os.path.relpath(p, _PACKAGE), os.stat(p).st_mtime, os.stat(p).st_size)
                 for p in paths)


class _CacheFile(IndexDataCacheFile):
    def _load_index(self):
        try:
            return super()._load_index()
        except Exception:  # damaged: an empty index, rewritten whole by the next save
            return {}

    def _load_data(self, name):
        try:
            return super()._load_data(name)
        except Exception as e:  # load() reads an OSError as "no entry"
            raise OSError(f"damaged cache entry {name}") from e


class SafeCache(FunctionCache):
    """FunctionCache whose unreadable entries count as missing."""

    def __init__(self, py_func):
        super().__init__(py_func)
        old = self._cache_file
        self._cache_file = _CacheFile(old._cache_path, old._index_name[: -len(".nbi")],
                                      (old._source_stamp, _sources_stamp()))

    def _load_overload(self, sig, target_context):
        try:
            return super()._load_overload(sig, target_context)
        except Exception:  # data that unpickles but cannot be rebuilt into code
            return None

    def save_overload(self, sig, data):
        try:
            super().save_overload(sig, data)
        except OSError as e:  # Numba removed its temporary file; the kernel runs from memory
            if not _warned:
                _warned.append(self._cache_path)
                print(f"warning: cannot write Numba's cache in {self._cache_path} "
                      f"({e.strerror or e}); kernels compile again next time; free some space "
                      "or set NUMBA_CACHE_DIR to a writable folder", file=sys.stderr)


def make_safe(dispatcher):
    """Give an @njit(cache=True) dispatcher the safe cache; returns it."""
    dispatcher._cache = SafeCache(dispatcher.py_func)
    return dispatcher


def cache_path(dispatcher):
    """The directory where this dispatcher's compiled code is cached."""
    return dispatcher._cache.cache_path
