"""Checkpoint format: round trips, rejection of bad bytes, atomic writes, fuzzing."""

import errno
import json
import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn import checkpoint, files
from charrnn.checkpoint import FORMAT_NAME, MAGIC, load, read_meta, save
from charrnn.errors import CannotWrite, CheckpointError

DTYPES = [np.float32, np.float64, np.int32, np.int64, np.uint8, np.uint32, np.uint64, np.bool_]


def craft(header, data=b"", *, version=1, magic=MAGIC):
    """Bytes of a checkpoint with the given header (dict or raw bytes) and a correct CRC."""
    text = header if isinstance(header, bytes) else json.dumps(header).encode()
    body = struct.pack("<8sIQ", magic, version, len(text)) + text + data
    return body + struct.pack("<I", zlib.crc32(body))


def header(*arrays, **fields):
    return {"format": FORMAT_NAME, "version": 1, "meta": {}, "arrays": list(arrays), **fields}


def entry(name="w", dtype="<f4", shape=(2,), offset=0, nbytes=8):
    return {"name": name, "dtype": dtype, "shape": list(shape), "offset": offset, "nbytes": nbytes}


def write(tmp_path, blob):
    path = tmp_path / "bad.ckpt"
    path.write_bytes(blob)
    return path


def sample_arrays():
    rng = np.random.default_rng(0)
    return {"w": rng.standard_normal((3, 5)).astype(np.float32), "step": np.array(7, np.int64),
            "mask": rng.random(9) > 0.5}


# --- round trips -------------------------------------------------------------------------------

def test_round_trip_all_dtypes_shapes_and_big_int_meta(tmp_path):
    rng = np.random.default_rng(1)
    arrays = {}
    for dt in DTYPES:
        name = np.dtype(dt).name
        arrays[name] = (rng.random((4, 3)) * 100).astype(dt)
        arrays[name + "_0d"] = np.array(5, dt)
        arrays[name + "_empty"] = np.zeros((0, 3), dt)
    arrays["big_endian"] = np.arange(6, dtype=">f8").reshape(2, 3)
    arrays["strided"] = np.arange(20, dtype=np.int32)[::3]
    gen = np.random.default_rng(123)
    meta = {"rng": gen.bit_generator.state, "huge": 2**200 + 1, "lr": 2e-3, "name": "ünï",
            "nested": {"a": [1, None, True]}}
    path = tmp_path / "m.ckpt"
    save(path, meta, arrays)
    got_meta, got = load(path)
    assert got_meta == meta and read_meta(path) == meta
    assert list(got) == list(arrays)
    for name, a in arrays.items():
        b = got[name]
        assert b.shape == a.shape and b.dtype == a.dtype.newbyteorder("=")
        assert b.dtype.isnative and b.flags.writeable and b.flags.c_contiguous
        np.testing.assert_array_equal(b, a)
    restored = np.random.default_rng()
    restored.bit_generator.state = got_meta["rng"]
    assert restored.random() == gen.random()
    assert os.listdir(tmp_path) == ["m.ckpt"]


def test_empty_checkpoint_and_overwrite(tmp_path):
    path = tmp_path / "m.ckpt"
    save(path, {}, {})
    assert load(path) == ({}, {})
    save(path, {"v": 2}, sample_arrays())
    assert load(path)[0] == {"v": 2}


def test_arrays_are_aligned_in_the_file(tmp_path):
    path = tmp_path / "m.ckpt"
    save(path, {}, sample_arrays())
    raw = path.read_bytes()
    (hlen,) = struct.unpack_from("<Q", raw, 12)
    assert (20 + hlen) % 64 == 0
    assert all(e["offset"] % 64 == 0 for e in json.loads(raw[20:20 + hlen])["arrays"])


@pytest.mark.parametrize("meta, arrays", [
    ({}, {"x": np.array(["a"], dtype=object)}),
    ({}, {"x": np.zeros(2, np.float16)}),
    ({}, {"x": np.zeros(2, np.complex64)}),
    ({}, {3: np.zeros(2)}),
    ({"f": object()}, {}),
    ({"s": {1, 2}}, {}),
])
def test_save_rejects_unsupported_input(tmp_path, meta, arrays):
    with pytest.raises(CheckpointError):
        save(tmp_path / "m.ckpt", meta, arrays)
    assert os.listdir(tmp_path) == []


# --- rejections --------------------------------------------------------------------------------

def test_crafted_file_loads(tmp_path):
    """The crafting helper makes loadable files, so the rejections below are for their reason."""
    data = np.array([1.5, -2], "<f4").tobytes() + bytes(56) + np.array([3], "<i8").tobytes()
    path = write(tmp_path, craft(header(entry(), entry("n", "<i8", (), 64, 8)), data))
    meta, arrays = load(path)
    assert arrays["w"].tolist() == [1.5, -2] and arrays["n"] == 3


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*charrnn train"):
        load(tmp_path / "nope.ckpt")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        read_meta(tmp_path / "nope.ckpt")


def test_directory(tmp_path):
    with pytest.raises(CheckpointError, match="is a directory"):
        load(tmp_path)


@pytest.mark.parametrize("blob", [b"", b"CHAR", MAGIC + b"\x01\x00", MAGIC + bytes(15)])
def test_too_short(tmp_path, blob):
    with pytest.raises(CheckpointError, match="truncated"):
        load(write(tmp_path, blob))


@pytest.mark.parametrize("blob", [b"PK\x03\x04" + bytes(40), b"\x80\x04\x95" + bytes(100), b"{}"])
def test_wrong_magic(tmp_path, blob):
    with pytest.raises(CheckpointError, match="not a charrnn checkpoint"):
        load(write(tmp_path, blob))


def test_newer_version(tmp_path):
    v = checkpoint.FORMAT_VERSION + 1
    path = write(tmp_path, craft(header(version=v), version=v))
    with pytest.raises(CheckpointError, match=rf"newer charrnn \(format v{v}\).*pip install -U"):
        read_meta(path)


def test_unknown_old_version(tmp_path):
    with pytest.raises(CheckpointError, match="unknown format version 0"):
        load(write(tmp_path, craft(header(version=0), version=0)))


@pytest.mark.parametrize("hlen", [2**63, 65 << 20, 1000])
def test_absurd_header_length(tmp_path, hlen):
    blob = struct.pack("<8sIQ", MAGIC, 1, hlen) + b"{}" * 100
    with pytest.raises(CheckpointError, match="header length .* does not fit"):
        load(write(tmp_path, blob))


@pytest.mark.parametrize("text", [b"{not json", b"\xff\xfe{}", b"[" * 100_000, b'"\xc3"',
                                  b'{"a": 1' + b"0" * 5000 + b"}"])
def test_header_not_json(tmp_path, text):
    with pytest.raises(CheckpointError, match="not valid UTF-8 JSON"):
        load(write(tmp_path, craft(text)))


@pytest.mark.parametrize("hdr", [
    [], "x", None, {},
    header(format="other"), header(version=3), header(version="1"), header(meta=[]),
    header(meta=None), header(arrays={}),
    {"version": 1, "meta": {}, "arrays": []},
])
def test_header_fields(tmp_path, hdr):
    with pytest.raises(CheckpointError, match="damaged"):
        read_meta(write(tmp_path, craft(hdr)))


@pytest.mark.parametrize("bad, match", [
    ({"dtype": "|O"}, "unsupported dtype"),
    ({"dtype": "<f2"}, "unsupported dtype"),
    ({"dtype": ">f4"}, "unsupported dtype"),
    ({"dtype": "<U1"}, "unsupported dtype"),
    ({"dtype": 4}, "wrong type"),
    ({"name": 1}, "wrong type"),
    ({"shape": 2}, "wrong type"),
    ({"shape": [-2]}, "non-negative integer"),
    ({"shape": [2.0]}, "non-negative integer"),
    ({"shape": [True, 2]}, "non-negative integer"),
    ({"shape": ["2"]}, "non-negative integer"),
    ({"offset": -64}, "non-negative integer"),
    ({"nbytes": 8.0}, "non-negative integer"),
    ({"shape": [1] * 40}, "impossible shape"),
    ({"shape": [0, 2**62, 2**62], "nbytes": 0}, "impossible shape"),
    ({"shape": [3]}, "does not match nbytes"),
    ({"shape": [2], "nbytes": 4}, "does not match nbytes"),
    ({"offset": 64}, "out-of-place offset"),
    ({"offset": 3}, "out-of-place offset"),
])
def test_bad_array_entry(tmp_path, bad, match):
    blob = craft(header({**entry(), **bad}), bytes(8))
    with pytest.raises(CheckpointError, match=match):
        load(write(tmp_path, blob))


@pytest.mark.parametrize("arrays", [
    [{"name": "w", "dtype": "<f4", "shape": [2], "offset": 0}],
    [{**entry(), "extra": 1}],
    ["w"],
])
def test_entry_keys(tmp_path, arrays):
    with pytest.raises(CheckpointError, match="exactly the keys"):
        load(write(tmp_path, craft(header(*arrays), bytes(8))))


def test_overlapping_and_duplicate_arrays(tmp_path):
    overlap = craft(header(entry("a"), entry("b", offset=0)), bytes(8))
    with pytest.raises(CheckpointError, match="out-of-place offset"):
        load(write(tmp_path, overlap))
    dup = craft(header(entry("a"), entry("a", offset=64)), bytes(72))
    with pytest.raises(CheckpointError, match="duplicate array name"):
        load(write(tmp_path, dup))


def test_sizes_beyond_file_are_rejected_before_allocating(tmp_path, monkeypatch):
    monkeypatch.setattr(np, "empty", lambda *a, **k: pytest.fail("allocated"))
    huge = entry(shape=(10**12,), nbytes=4 * 10**12)
    with pytest.raises(CheckpointError, match="header implies"):
        load(write(tmp_path, craft(header(huge), bytes(8))))


@pytest.mark.parametrize("cut", [1, 4, 5, 60])
def test_truncated_checkpoint(tmp_path, cut):
    path = tmp_path / "m.ckpt"
    save(path, {"a": 1}, sample_arrays())
    path.write_bytes(path.read_bytes()[:-cut])
    with pytest.raises(CheckpointError, match="truncated"):
        load(path)


def test_trailing_junk(tmp_path):
    path = tmp_path / "m.ckpt"
    save(path, {}, sample_arrays())
    path.write_bytes(path.read_bytes() + b"\x00")
    with pytest.raises(CheckpointError, match="header implies"):
        load(path)


def test_checksum_mismatch(tmp_path):
    path = tmp_path / "m.ckpt"
    save(path, {}, sample_arrays())
    raw = bytearray(path.read_bytes())
    raw[-10] ^= 0x01
    path.write_bytes(bytes(raw))
    read_meta(path)  # the header alone is fine
    with pytest.raises(CheckpointError, match=r"damaged \(checksum mismatch\)"):
        load(path)


# --- atomicity ---------------------------------------------------------------------------------

def enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class FullDisk:
    """A file whose writes fail with ENOSPC once `room` bytes have been written."""

    def __init__(self, f, room):
        self.f, self.room = f, room

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def write(self, data):
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            self.f.write(data[:self.room])
            self.room = 0
            enospc()
        self.room -= len(data)
        return self.f.write(data)


@pytest.mark.parametrize("how", ["fsync", "write"])
def test_failed_save_keeps_previous_checkpoint(tmp_path, monkeypatch, how):
    path = tmp_path / "m.ckpt"
    save(path, {"old": True}, sample_arrays())
    before = path.read_bytes()
    if how == "fsync":
        monkeypatch.setattr(os, "fsync", enospc)
    else:
        monkeypatch.setattr(files, "open", lambda p, mode: FullDisk(open(p, mode), 1000),
                            raising=False)
    with pytest.raises(CannotWrite, match="No space left.*previous checkpoint .* intact") as e:
        save(path, {"old": False}, {"big": np.zeros(10_000)})
    assert "\n" not in str(e.value)
    assert path.read_bytes() == before
    assert load(path)[0] == {"old": True}
    assert os.listdir(tmp_path) == ["m.ckpt"]


def test_interrupted_save_cleans_up_and_propagates(tmp_path, monkeypatch):
    def interrupt(fd):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupt)
    with pytest.raises(KeyboardInterrupt):
        save(tmp_path / "m.ckpt", {}, sample_arrays())
    assert os.listdir(tmp_path) == []


SLOW_SAVER = """
import sys, time
import numpy as np
from charrnn import checkpoint, files

target, marker = sys.argv[1:]


class Slow:
    def __init__(self, f):
        self.f = f

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return self.f.__exit__(*exc)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def write(self, data):
        n = self.f.write(data)
        self.f.flush()
        with open(marker, "a") as m:
            m.write(".")
        time.sleep(0.05)
        return n


files.open = lambda path, mode: Slow(open(path, mode))  # checkpoint.save writes through it
arrays = {f"a{i}": np.full(1 << 20, i, np.float32) for i in range(50)}  # 200 MB
checkpoint.save(target, {"new": True}, arrays)
"""


def test_sigkill_during_save_keeps_previous_checkpoint(tmp_path):
    path = tmp_path / "m.ckpt"
    save(path, {"old": True}, sample_arrays())
    before = path.read_bytes()
    marker = tmp_path / "writing"
    env = {**os.environ, "PYTHONPATH": str(Path(checkpoint.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", SLOW_SAVER, str(path), str(marker)], env=env)
    try:
        deadline = time.monotonic() + 60
        while not (marker.exists() and len(marker.read_text()) >= 6):  # a few arrays written
            assert proc.poll() is None, "the saver exited before it was killed"
            assert time.monotonic() < deadline, "the saver never started writing"
            time.sleep(0.01)
        tmp, = tmp_path.glob(f".m.ckpt.{proc.pid}.*.tmp")
        partial = tmp.stat().st_size
        proc.send_signal(signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        proc.kill()
    assert 4 << 20 < partial < 200 << 20  # killed mid-write, with some arrays already out
    assert path.read_bytes() == before
    assert load(path)[0] == {"old": True}
    with pytest.raises(CheckpointError):
        load(tmp)  # the orphaned temp file is rejected, not mistaken for a checkpoint


# --- fuzzing -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def blob(tmp_path_factory):
    path = tmp_path_factory.mktemp("fuzz") / "m.ckpt"
    save(path, {"rng": np.random.default_rng(0).bit_generator.state}, sample_arrays())
    return path.read_bytes()


FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def load_both(path):
    """Load and read_meta may only succeed or raise CheckpointError."""
    for fn in (read_meta, load):
        try:
            fn(path)
        except CheckpointError as e:
            assert "\n" not in str(e)


@FUZZ
@given(data=st.binary(max_size=400), magic=st.booleans())
def test_fuzz_random_bytes(tmp_path, data, magic):
    load_both(write(tmp_path, (MAGIC if magic else b"") + data))


@FUZZ
@given(data=st.data())
def test_fuzz_mutations_and_truncations(tmp_path, blob, data):
    i = data.draw(st.integers(0, len(blob) - 1))
    if data.draw(st.booleans()):
        flip = data.draw(st.integers(1, 255))
        bad = blob[:i] + bytes([blob[i] ^ flip]) + blob[i + 1:]
    else:
        bad = blob[:i]
    with pytest.raises(CheckpointError):
        load(write(tmp_path, bad))


json_value = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(),
                       st.text(max_size=4), st.lists(st.integers(-3, 10**10), max_size=4))


@FUZZ
@given(entries=st.lists(st.fixed_dictionaries(
    {k: st.one_of(json_value, st.sampled_from(["<f4", "|u1", "|O", "w", [0], [2, 2], 8, 64]))
     for k in ("name", "dtype", "shape", "offset", "nbytes")}), max_size=3),
    data=st.binary(max_size=200))
def test_fuzz_headers_with_valid_checksum(tmp_path, entries, data):
    load_both(write(tmp_path, craft(header(*entries), data)))
