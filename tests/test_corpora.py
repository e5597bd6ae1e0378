"""The catalog and downloads, served from a local HTTP server on 127.0.0.1 (no internet here):
progress, verification, checksum mismatch, dropped connections, resume, unpacking, the CLI."""
import hashlib
import io
import json
import os
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import corpora
from charrnn.cli import cli
from charrnn.errors import CharRNNError, UsageError

rng = np.random.default_rng(0)
WORDS = ["the ", "cat ", "sat ", "on ", "mat. ", "héllo ", "wörld ", "日本 ", "🙂 ", "\n"]
TEXT = "".join(rng.choice(WORDS, size=60_000)).encode("utf-8")  # ~300 KB


def zipped(member, data):
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(member, data)
    return buf.getvalue()


class Handler(BaseHTTPRequestHandler):
    """Serves ``server.files``; ``server.drops`` responses are cut off halfway; Range requests
    are honoured when ``server.ranges``. Every request's Range header goes to ``server.log``."""

    def do_GET(self):
        srv = self.server
        rng_header = self.headers.get("Range")
        srv.log.append((self.path, rng_header))
        data = srv.files.get(self.path)
        if data is None:
            self.send_error(404, "Not Found")
            return
        start = 0
        if rng_header and srv.ranges:
            start = int(rng_header.removeprefix("bytes=").split("-")[0])
            if start >= len(data):
                self.send_error(416, "Range Not Satisfiable")
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if srv.drops > 0:
            srv.drops -= 1
            body = body[: len(body) // 2]  # then the connection closes: a short read
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server():
    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    srv.files, srv.drops, srv.ranges, srv.log = {}, 0, True, []
    thread = threading.Thread(target=srv.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    srv.url = f"http://127.0.0.1:{srv.server_address[1]}"
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture
def env(tmp_path, monkeypatch, server):
    """A private cache and a catalog of local corpora; no waiting between retries."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(corpora, "BACKOFF_S", 0.0)
    server.files["/tiny.txt"] = TEXT
    server.files["/big.zip"] = zipped("big", TEXT)
    entries = {
        "tiny": {"description": "d", "licence": "l", "url": server.url + "/tiny.txt",
                 "size": len(TEXT), "sha256": hashlib.sha256(TEXT).hexdigest(),
                 "unpack": {"format": "none"}, "text_size": len(TEXT)},
        "big": {"description": "d", "licence": "l", "url": server.url + "/big.zip",
                "size": None, "sha256": None, "unpack": {"format": "zip", "member": "big"},
                "text_size": len(TEXT)},
        "gone": {"description": "d", "licence": "l", "url": server.url + "/gone.txt",
                 "sha256": None, "unpack": {"format": "none"}},
        "offline": {"description": "d", "licence": "l", "url": "http://127.0.0.1:9/x.txt",
                    "sha256": None, "unpack": {"format": "none"}},
    }
    path = tmp_path / "catalog.json"
    path.write_text(json.dumps({"format": 1, "corpora": entries}))
    monkeypatch.setenv("CHARRNN_CATALOG", str(path))
    return tmp_path / "cache"


def leftovers(cache):
    """Files in the cache's downloads and corpora folders, but for lock files."""
    return sorted(p.name for d in ("downloads", "corpora") if (cache / d).exists()
                  for p in (cache / d).iterdir() if not p.name.endswith(".lock"))


def get(name, **kw):
    lines = []
    path = corpora.get(name, log=lines.append, **kw)
    return path, lines


# ---- the shipped catalog ----------------------------------------------------------------------


def test_shipped_catalog_is_valid_and_honest(monkeypatch):
    monkeypatch.delenv("CHARRNN_CATALOG", raising=False)
    entries = corpora.catalog()
    assert {"tinyshakespeare", "enwik8", "text8", "python-stdlib"} <= set(entries)
    tiny = entries["tinyshakespeare"]
    assert tiny["size"] == tiny["text_size"] == 1115394
    assert tiny["sha256"] == "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
    for name in ("enwik8", "text8"):  # not downloadable here: no hash is claimed
        assert entries[name]["sha256"] is None and entries[name]["text_size"] == 10**8
        assert entries[name]["unpack"] == {"format": "zip", "member": name}
    assert entries["enwik8"]["bytes"] is True
    assert all(e["licence"] for e in entries.values())
    root = Path(__file__).resolve().parents[1]
    assert (root / "corpora" / "catalog.json").resolve() == corpora.CATALOG.resolve()


def test_bad_user_catalog_is_a_clear_error(tmp_path, monkeypatch):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"format": 1, "corpora": {"x": {
        "description": "d", "licence": "l", "url": "http://h/x", "sha256": "abc",
        "unpack": {"format": "none"}}}}))
    monkeypatch.setenv("CHARRNN_CATALOG", str(bad))
    with pytest.raises(UsageError, match="sha256 that is not 64"):
        corpora.catalog()
    monkeypatch.setenv("CHARRNN_CATALOG", str(tmp_path / "missing.json"))
    with pytest.raises(UsageError, match="cannot read corpus catalog"):
        corpora.catalog()


# ---- downloads --------------------------------------------------------------------------------


def test_get_downloads_verifies_and_shows_progress(env, server, capsys):
    path, lines = get("tiny", progress=True)
    assert path == env / "corpora" / "tiny.txt" and path.read_bytes() == TEXT
    err = capsys.readouterr().err
    assert "tiny" in err and "100%" in err  # the progress bar
    record = json.loads((env / "corpora" / "tiny.json").read_text())
    assert record["verified_by"] == "catalog sha256"
    assert record["sha256"] == hashlib.sha256(TEXT).hexdigest()
    assert leftovers(env) == ["tiny.json", "tiny.txt"]
    assert corpora.status("tiny") == "downloaded" and corpora.cached_text("tiny") == path
    server.log.clear()
    again, lines = get("tiny")
    assert again == path and server.log == [] and "already downloaded" in lines[0]


def test_get_with_output_writes_a_copy(env, tmp_path):
    out, _ = get("tiny", out=tmp_path / "copy.txt")
    assert out == tmp_path / "copy.txt" and out.read_bytes() == TEXT
    assert corpora.cached_text("tiny") is not None


def test_checksum_mismatch_is_an_error_and_removes_the_file(env, server):
    server.files["/tiny.txt"] = TEXT[:-1] + b"!"  # same size, wrong bytes
    with pytest.raises(CharRNNError) as info:
        get("tiny")
    msg = str(info.value)
    assert "checksum mismatch for tiny" in msg and "removed" in msg and "\n" not in msg
    assert leftovers(env) == [] and corpora.status("tiny") == "not downloaded"


def test_dropped_connection_is_resumed_with_a_range_request(env, server):
    server.drops = 2
    path, lines = get("tiny")
    assert path.read_bytes() == TEXT
    ranges = [r for _, r in server.log]
    assert ranges == [None, f"bytes={len(TEXT) // 2}-",
                      f"bytes={len(TEXT) // 2 + (len(TEXT) - len(TEXT) // 2) // 2}-"]
    assert sum("retrying" in line for line in lines) == 2
    assert leftovers(env) == ["tiny.json", "tiny.txt"]


def test_server_without_range_support_restarts_from_zero(env, server):
    server.ranges, server.drops = False, 1
    path, _ = get("tiny")
    assert path.read_bytes() == TEXT and len(server.log) == 2


def test_giving_up_keeps_only_the_part_file_and_the_next_run_resumes(env, server):
    server.drops = corpora.RETRIES + 1
    with pytest.raises(CharRNNError, match="run the same command again to resume"):
        get("tiny")
    assert leftovers(env) == ["tiny.download.part"]  # no half-written corpus
    part = env / "downloads" / "tiny.download.part"
    have = part.stat().st_size
    assert 0 < have < len(TEXT) and corpora.status("tiny") == f"partial ({have} bytes)"
    with pytest.raises(UsageError, match="not downloaded yet.*charrnn corpus get tiny"):
        corpora.text_path("tiny")
    server.log.clear()
    path, _ = get("tiny")
    assert path.read_bytes() == TEXT and server.log == [("/tiny.txt", f"bytes={have}-")]


def test_zip_is_unpacked_and_an_unknown_hash_is_trusted_on_first_use(env, server):
    path, lines = get("big")
    assert path.read_bytes() == TEXT
    sha = hashlib.sha256(server.files["/big.zip"]).hexdigest()
    assert any("trusted" in line and sha in line for line in lines)
    assert json.loads((env / "trusted.json").read_text()) == {server.url + "/big.zip": sha}
    assert leftovers(env) == ["big.json", "big.txt"]  # the archive is gone once unpacked
    os.remove(path)  # fetch again: now it must match the hash seen the first time
    server.files["/big.zip"] = zipped("big", TEXT[::-1])
    with pytest.raises(CharRNNError, match=f"checksum mismatch for big: expected sha256 {sha}"):
        get("big")


def test_corrupt_zip_is_removed_and_not_trusted(env, server):
    server.files["/big.zip"] = b"PK not really a zip"
    with pytest.raises(CharRNNError, match="not a readable zip"):
        get("big")
    assert leftovers(env) == [] and not (env / "trusted.json").exists()


def test_http_errors_and_unreachable_hosts_are_clear(env):
    with pytest.raises(CharRNNError, match="HTTP 404"):
        get("gone")
    with pytest.raises(CharRNNError, match="cannot reach 127.0.0.1:9.*internet connection"):
        get("offline")
    with pytest.raises(UsageError, match="no corpus named 'nope'.*tiny"):
        get("nope")


# ---- the command line -------------------------------------------------------------------------


def test_cli_list_get_and_train_by_name(env, tmp_path):
    runner = CliRunner()
    result = runner.invoke(cli, ["corpus", "list"])
    assert result.exit_code == 0, result.output
    assert "tiny" in result.output and "not downloaded" in result.output
    assert str(env) in result.output and "python-stdlib" in result.output
    rows = [json.loads(line) for line in runner.invoke(cli, ["corpus", "list", "--json"]).output
            .splitlines()]
    assert {r["name"]: r["status"] for r in rows}["python-stdlib"] == "built in"

    train = ["train", "tiny", "--out", str(tmp_path / "run"), "--max-steps", "3", "--hidden", "8",
             "--layers", "1", "--batch-size", "4", "--seq-len", "8", "--quiet"]
    result = runner.invoke(cli, train)
    assert result.exit_code == 2
    assert result.output.strip() == ("error: corpus 'tiny' is in the catalog but not downloaded "
                                     "yet; fetch it first with: charrnn corpus get tiny")

    result = runner.invoke(cli, ["corpus", "get", "tiny", "--quiet"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(env / "corpora" / "tiny.txt")
    result = runner.invoke(cli, train)
    assert result.exit_code == 0, result.output
    meta = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert meta["step"] == 3
    from charrnn.checkpoint import read_meta
    corpus = read_meta(tmp_path / "run" / "last.ckpt")["corpus"]
    assert corpus["name"] == "tiny" and corpus["sha256"] == hashlib.sha256(TEXT).hexdigest()


def test_cli_get_errors_are_one_line(env, server):
    server.files["/tiny.txt"] = b"x" * len(TEXT)
    result = CliRunner().invoke(cli, ["corpus", "get", "tiny", "-q"])
    assert result.exit_code == 1
    assert result.output.startswith("error: checksum mismatch") and result.output.count("\n") == 1


def test_builtin_corpus_get_writes_its_text(env, tmp_path):
    with pytest.raises(UsageError, match="built in"):
        get("python-stdlib")
    out, _ = get("python-stdlib", out=tmp_path / "stdlib.py.txt")
    assert out.stat().st_size > 1_000_000


@pytest.mark.parametrize("command", [["corpus"], ["corpus", "list"], ["corpus", "get"]])
def test_corpus_commands_have_help(command):
    result = CliRunner().invoke(cli, [*command, "--help"])
    assert result.exit_code == 0 and "Usage:" in result.output


def test_a_server_that_never_answers_times_out_in_one_line(env, tmp_path, monkeypatch):
    import socket
    import time

    silent = socket.create_server(("127.0.0.1", 0))  # connects, then never says a word
    host = f"127.0.0.1:{silent.getsockname()[1]}"
    entries = {"silent": {"description": "d", "licence": "l", "sha256": None,
                          "url": f"http://{host}/x.txt",
                          "unpack": {"format": "none"}}}
    (tmp_path / "silent.json").write_text(json.dumps({"format": 1, "corpora": entries}))
    monkeypatch.setenv("CHARRNN_CATALOG", str(tmp_path / "silent.json"))
    with silent:
        t0 = time.monotonic()
        result = CliRunner().invoke(cli, ["corpus", "get", "silent", "--timeout", "0.5"])
    assert time.monotonic() - t0 < 5
    assert result.exit_code == 1 and result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith(f"error: no answer from {host} in 0.5 s to download "
                                    "silent;")
    assert "run the same command again (it resumes" in result.stderr
    assert "--timeout" in result.stderr
