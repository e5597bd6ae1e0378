"""The corpus catalog, and verified, resumable downloads of its corpora into the user cache.

``charrnn/catalog.json`` (``corpora/catalog.json`` in the source tree) lists well-known corpora:
a source URL, the download's size and SHA-256, a licence and an unpack recipe. ``$CHARRNN_CATALOG``
may name another JSON file of the same form whose entries are added (or replace ours), e.g. to
point at a mirror. In the cache directory (see ``cache.cache_dir``):

- ``downloads/<name>.<ext>.part``: a download in progress; a dropped connection is resumed with
  an HTTP Range request, in the same run or the next;
- ``downloads/<name>.<ext>``: a verified archive, until it is unpacked;
- ``corpora/<name>.txt`` and ``corpora/<name>.json``: the text, and a record of where it came
  from and how it was verified. The text is written to a temporary file and renamed into place
  only once complete, so a half-written corpus never appears;
- ``trusted.json``: the SHA-256 of each download the catalog has no hash for, recorded on the
  first successful download ("trust on first use") and checked on every later one.
"""
import contextlib
import datetime
import http.client
import json
import os
import shutil
import sys
import sysconfig
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from . import __version__
from .cache import cache_dir, file_sha256
from .config import DOWNLOAD_TIMEOUT
from .errors import CannotWrite, CharRNNError, UsageError
from .files import atomic_write, make_dirs, write_atomic


_SKIPPED_DIRS = frozenset({"site-packages", "dist-packages", "test", "tests", "idle_test"})


def python_stdlib_text() -> str:
    """The ``.py`` sources of the running Python's standard library, as one text.

    Files are joined with "\\n" in sorted order of their relative paths; third-party packages
    and test directories are left out, so the text depends only on the Python version.
    """
    root = Path(sysconfig.get_paths()["stdlib"])
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d not in _SKIPPED_DIRS]
        found += [Path(dirpath, f) for f in filenames if f.endswith(".py")]
    parts = []
    for path in sorted(found, key=lambda p: p.relative_to(root).as_posix()):
        try:
            parts.append(path.read_bytes().decode("utf-8", errors="replace"))
        except OSError:
            continue
    if not parts:
        raise UsageError(
            f"no standard library sources found under '{root}'; train on a text file instead"
        )
    return "\n".join(parts)


# The corpora generated here rather than downloaded (catalog.json marks them "builtin").
BUILTINS = {"python-stdlib": python_stdlib_text}
BUILTIN_CORPORA = tuple(BUILTINS)

CATALOG = Path(__file__).with_name("catalog.json")
UNPACK_FORMATS = ("none", "zip")
RETRIES = 3  # further tries after a dropped or failed connection, each resuming the download
BACKOFF_S = 1.0  # seconds before the first retry, doubling after each
_READ = 1 << 16
_RESUME = "run the same command again: the download resumes"


def _catalog_error(path, problem):
    return UsageError(f"corpus catalog {path} is invalid: {problem}; fix the file "
                      "(see corpora/README.md)")


def _check_entry(path, name, e):
    if not isinstance(e, dict) or not isinstance(e.get("description"), str) \
            or not isinstance(e.get("licence"), str):
        raise _catalog_error(path, f"entry {name!r} needs a description and a licence")
    if e.get("builtin"):
        return
    if not isinstance(e.get("url"), str) or not e["url"].startswith(("http://", "https://")):
        raise _catalog_error(path, f"entry {name!r} needs an http(s) url")
    sha = e.get("sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64
                                and all(c in "0123456789abcdef" for c in sha)):
        raise _catalog_error(path, f"entry {name!r} has a sha256 that is not 64 lower-case hex "
                                   "digits (use null when unknown)")
    for key in ("size", "text_size"):
        if e.get(key) is not None and (type(e[key]) is not int or e[key] < 1):
            raise _catalog_error(path, f"entry {name!r} has a {key} that is not a positive "
                                       "integer (use null when unknown)")
    unpack = e.get("unpack")
    if not isinstance(unpack, dict) or unpack.get("format") not in UNPACK_FORMATS or (
            unpack["format"] == "zip" and not isinstance(unpack.get("member"), str)):
        raise _catalog_error(path, f"entry {name!r} needs unpack {{\"format\": \"none\"}} or "
                                   "{\"format\": \"zip\", \"member\": NAME}")


def _read_catalog(path):
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as e:
        raise UsageError(f"cannot read corpus catalog {path} ({e.strerror}); check "
                         "$CHARRNN_CATALOG") from None
    except ValueError as e:
        raise _catalog_error(path, f"not JSON ({e})") from None
    if not isinstance(data, dict) or data.get("format") != 1 \
            or not isinstance(data.get("corpora"), dict):
        raise _catalog_error(path, 'it is not {"format": 1, "corpora": {...}}')
    for name, entry in data["corpora"].items():
        _check_entry(path, name, entry)
    return data["corpora"]


def catalog() -> dict:
    """``{name: entry}``: the built-in catalog, with ``$CHARRNN_CATALOG``'s entries on top."""
    entries = _read_catalog(CATALOG)
    extra = os.environ.get("CHARRNN_CATALOG")
    if extra:
        entries.update(_read_catalog(extra))
    return entries


def entry(name: str) -> dict:
    """The catalog entry for ``name``, or a UsageError listing the known names."""
    entries = catalog()
    if name not in entries:
        raise UsageError(f"no corpus named {name!r} in the catalog; choose one of "
                         f"{', '.join(entries)} (see charrnn corpus list)")
    return entries[name]


def _paths(name, e):
    root = cache_dir()
    ext = "zip" if e["unpack"]["format"] == "zip" else "download"
    return {"part": root / "downloads" / f"{name}.{ext}.part",
            "archive": root / "downloads" / f"{name}.{ext}",
            "text": root / "corpora" / f"{name}.txt",
            "record": root / "corpora" / f"{name}.json",
            "trusted": root / "trusted.json",
            "lock": root / "downloads" / f"{name}.lock"}


def cached_text(name: str):
    """The path of a downloaded catalog corpus's text, or None if it is not (fully) there."""
    e = entry(name)
    if e.get("builtin"):
        return None
    p = _paths(name, e)
    try:
        record = json.loads(p["record"].read_text())
        if p["text"].stat().st_size == record["text_size"]:
            return p["text"]
    except (OSError, ValueError, KeyError, TypeError):
        pass
    return None


def text_path(name: str) -> Path:
    """The text of a catalog corpus; a UsageError saying how to fetch it if it is not here."""
    path = cached_text(name)
    if path is None:
        raise UsageError(f"corpus {name!r} is in the catalog but not downloaded yet; "
                         f"fetch it first with: charrnn corpus get {name}")
    return path


def status(name: str) -> str:
    """'built in', 'downloaded', 'partial (N bytes)' or 'not downloaded'."""
    e = entry(name)
    if e.get("builtin"):
        return "built in"
    if cached_text(name):
        return "downloaded"
    part = _paths(name, e)["part"]
    if part.exists():
        return f"partial ({part.stat().st_size} bytes)"
    return "not downloaded"


# ---- fetching --------------------------------------------------------------------------------


def get(name, out=None, progress=None, log=None, timeout=None) -> Path:
    """Download, verify and unpack a catalog corpus into the cache; return its text's path.

    With ``out``, also copy the text there (for ``python-stdlib``, write the generated text).
    progress: show a progress bar (default: when stderr is a terminal). log: a function that
    takes a line of text (default: print to stderr). timeout: seconds to wait for the server
    to connect or send more (default config.DOWNLOAD_TIMEOUT): a server that sends nothing in
    that time is given up at once, one that stalls midway is tried again (resuming).
    """
    log = log or (lambda line: print(line, file=sys.stderr))
    e = entry(name)
    if e.get("builtin"):
        if out is None:
            raise UsageError(f"{name} is built in: there is nothing to download; train on it "
                             f"with charrnn train {name}, or write it out with -o FILE")
        write_atomic(Path(out), BUILTINS[name]().encode("utf-8"), fsync=False)
        log(f"wrote {name} to {out}")
        return Path(out)
    p = _paths(name, e)
    make_dirs(p["lock"].parent)
    with _locked(p["lock"]):
        text = cached_text(name)
        if text:
            log(f"{name} is already downloaded: {text}")
        else:
            text = _fetch(name, e, p, sys.stderr.isatty() if progress is None else progress, log,
                          DOWNLOAD_TIMEOUT if timeout is None else timeout)
    if out is not None:
        _copy_atomic(text, Path(out))
        log(f"copied {name} to {out}")
        return Path(out)
    return text


def _fetch(name, e, p, progress, log, timeout):
    trusted = _read_trusted(p["trusted"])
    expected = e.get("sha256") or trusted.get(e["url"])
    archive = p["archive"]
    if not (archive.exists() and expected and file_sha256(archive) == expected):
        _download(name, e["url"], p["part"], e.get("size"), progress, log, timeout)
        got = file_sha256(p["part"])
        size = p["part"].stat().st_size
        if (expected and got != expected) or (e.get("size") and size != e["size"]):
            p["part"].unlink()
            want = f"sha256 {expected}" if expected else f"{e['size']} bytes"
            raise CharRNNError(
                f"checksum mismatch for {name}: expected {want}, got sha256 {got} ({size} bytes) "
                f"from {e['url']}; the bad download was removed; run the same command to try "
                "again, and if it fails again the source has changed: report it")
        try:
            os.replace(p["part"], archive)
        except OSError as err:
            raise CannotWrite(archive, err, then=_RESUME) from None
    else:
        got = expected
    try:
        _unpack(name, e, archive, p["text"])
    except CannotWrite:  # the archive is sound: keep it
        raise
    except CharRNNError:
        archive.unlink(missing_ok=True)
        raise
    archive.unlink(missing_ok=True)
    if e.get("sha256"):
        how = "catalog sha256"
    elif e["url"] in trusted:
        how = "sha256 trusted on first use"
    else:
        how = "sha256 trusted on first use (this download)"
        trusted[e["url"]] = got
        write_atomic(p["trusted"], json.dumps(trusted, indent=1).encode(), fsync=False)
        log(f"warning: the catalog has no SHA-256 for {name}, so this first download is trusted: "
            f"sha256 {got}, recorded in {p['trusted']}; later downloads must match it. "
            "Please compare it with the source and report it so it can go in the catalog.")
    record = {"name": name, "url": e["url"], "sha256": got, "verified_by": how,
              "text_size": p["text"].stat().st_size, "licence": e["licence"],
              "fetched": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    write_atomic(p["record"], json.dumps(record, indent=1).encode(), fsync=False)
    log(f"{name}: {record['text_size']} bytes of text in {p['text']} ({how})")
    return p["text"]


def _download(name, url, part, size, progress, log, timeout):
    """Fetch ``url`` into ``part``, resuming whatever is already there, until complete."""
    make_dirs(part.parent)
    host, problem = urllib.parse.urlsplit(url).netloc, None
    for attempt in range(RETRIES + 1):
        if attempt:
            time.sleep(BACKOFF_S * 2 ** (attempt - 1))
            log(f"{problem}; retrying ({attempt} of {RETRIES})")
        have = part.stat().st_size if part.exists() else 0
        try:
            _request(name, url, part, have, size, progress, timeout)
            return
        except urllib.error.HTTPError as e:
            if e.code == 416 and have and size == have:
                return  # the part file already holds it all
            if e.code == 416:
                part.unlink()
                problem = "the server refused to resume; starting over"
            elif e.code in (408, 429) or e.code >= 500:
                problem = f"HTTP {e.code} {e.reason}"
            else:
                raise CharRNNError(f"cannot download {name}: HTTP {e.code} {e.reason} from {url}; "
                                   "check the URL in the catalog, or try again later") from None
        except (urllib.error.URLError, TimeoutError) as e:
            if not _timed_out(e):  # no connection at all: retrying will not help
                raise CharRNNError(
                    f"cannot reach {host} to download {name} ({e.reason}); check your internet "
                    f"connection, or fetch {url} some other way and train on the file") from None
            if (part.stat().st_size if part.exists() else 0) == have:  # not a byte: no answer
                raise CharRNNError(
                    f"no answer from {host} in {timeout:g} s to download {name}; check your "
                    "connection and run the same command again (it resumes the download, "
                    f"{have} bytes so far), with a longer --timeout if the server is slow") \
                    from None
            problem = f"download of {name} stalled (nothing for {timeout:g} s)"
        except (OSError, http.client.HTTPException) as e:  # resets, short reads
            problem = f"download of {name} interrupted ({_reason(e)})"
    have = part.stat().st_size if part.exists() else 0
    raise CharRNNError(f"{problem}; gave up after {RETRIES + 1} tries with {have} bytes kept in "
                       f"{part}; run the same command again to resume")


def _timed_out(e):
    """Whether urllib's error is a timeout: a read's own, or a connection's (its reason)."""
    return isinstance(e, TimeoutError) or isinstance(getattr(e, "reason", None), TimeoutError)


def _reason(e):
    if isinstance(e, http.client.IncompleteRead):
        more = f", {e.expected} bytes short" if e.expected else ""
        return f"connection closed early{more}"
    return str(e) or type(e).__name__


def _request(name, url, part, have, size, progress, timeout):
    headers = {"User-Agent": f"charrnn/{__version__}"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers),
                                timeout=timeout) as resp:
        if have and not (resp.status == 206 and resp.headers.get("Content-Range", "")
                         .startswith(f"bytes {have}-")):
            have = 0  # the server sent the whole file: start over
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else size
        with tqdm(total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024,
                  desc=name, disable=not progress, file=sys.stderr, dynamic_ncols=True) as bar:
            got = _receive(resp, part, have, bar)
    if total is not None and got != total:
        raise http.client.IncompleteRead(b"", total - got)


def _receive(resp, part, have, bar):
    """Append the response to ``part`` (from scratch unless ``have``); its size at the end.
    Network errors propagate as they are (they are retried); a local write fails as
    CannotWrite, which no retry helps."""
    try:
        f = open(part, "ab" if have else "wb")
    except OSError as e:
        raise CannotWrite(part, e, then=_RESUME) from None
    try:
        while chunk := resp.read(_READ):
            try:
                f.write(chunk)
            except OSError as e:
                raise CannotWrite(part, e, then=_RESUME) from None
            bar.update(len(chunk))
        return f.tell()
    finally:
        try:
            f.close()
        except OSError as e:
            raise CannotWrite(part, e, then=_RESUME) from None


def _unpack(name, e, archive, text):
    """Turn a verified download into the corpus text, through a temporary file."""
    with atomic_write(text) as dst:
        if e["unpack"]["format"] == "none":
            with open(archive, "rb") as src:
                shutil.copyfileobj(src, dst, 1 << 20)
        else:
            _unzip(name, archive, e["unpack"]["member"], dst)
        size = dst.tell()
        if e.get("text_size") and size != e["text_size"]:
            raise CharRNNError(f"unpacked {name} holds {size} bytes, not the {e['text_size']} "
                               "the catalog says; the download was removed; run the same "
                               "command to try again")


def _unzip(name, archive, member, dst):
    try:
        with zipfile.ZipFile(archive) as z:
            if member not in z.namelist():
                raise CharRNNError(f"the {name} archive holds no {member!r} (it has "
                                   f"{', '.join(z.namelist()[:5])}); the catalog entry is wrong")
            with z.open(member) as src:
                shutil.copyfileobj(src, dst, 1 << 20)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as e:
        raise CharRNNError(f"the {name} download is not a readable zip archive ({e}); it was "
                           "removed; run the same command to try again") from None


# ---- small file helpers ----------------------------------------------------------------------


def _read_trusted(path):
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _copy_atomic(src, dst):
    if dst.is_dir():
        raise UsageError(f"-o {dst} is a directory; give a file name")
    with atomic_write(dst) as f, open(src, "rb") as s:
        shutil.copyfileobj(s, f, 1 << 20)


@contextlib.contextmanager
def _locked(path):
    """Hold an exclusive lock on ``path`` (POSIX): two `corpus get` runs take turns."""
    try:
        import fcntl
    except ImportError:  # no flock on this system: go ahead unlocked
        yield
        return
    try:
        f = open(path, "a")
    except OSError as e:
        raise CannotWrite(path, e) from None
    with f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)
