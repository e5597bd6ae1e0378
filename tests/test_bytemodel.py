"""A model of raw bytes through the Sampler (issue 38): text in and text out, or bytes with
raw=True, the same in sample, sample_batch, stream, beams and log_prob; the CLI only passes
them through. A hand-built model that greedily spells one cycle of bytes gives known texts."""
import numpy as np
import pytest
from click.testing import CliRunner

from charrnn import CharRNN, ModelConfig, Sampler, Vocab, checkpoint
from charrnn.cli import cli
from charrnn.errors import UsageError

CYCLE = "a日é\n"  # its 7 UTF-8 bytes are distinct: each names the next
BYTES = CYCLE.encode("utf-8")
VOCAB = Vocab([chr(b) for b in range(256)])  # a byte model's: byte b is chr(b)


def cycle_model():
    """An RNN whose state after reading byte k of the cycle is unit k, which the decoder maps
    to byte k + 1: greedily it spells the cycle from wherever it is (after the start "\\n": a)."""
    H = len(BYTES)
    model = CharRNN(ModelConfig(vocab_size=256, cell="rnn", num_layers=1, hidden_size=H),
                    np.float64, seed=0)
    model.flat[:] = 0
    for k, b in enumerate(BYTES):
        model.params["rnn.weight_ih_l0"][k, b] = 10.0  # (H, V)
        model.params["decoder.weight"][BYTES[(k + 1) % H], k] = 20.0  # (V, H)
    return model


def spelled(n, after="\n"):
    """The first n bytes of the cycle after the byte that `after` ends with."""
    start = BYTES.index(after.encode("utf-8")[-1]) + 1
    return (BYTES * (n // len(BYTES) + 2))[start: start + n]


@pytest.fixture(scope="module")
def path(tmp_path_factory):
    path = tmp_path_factory.mktemp("bytes") / "cycle.ckpt"
    checkpoint.save_model(path, cycle_model(), VOCAB, {"corpus": {"bytes": True}})
    return path


@pytest.fixture(scope="module")
def sampler(path):
    sampler = Sampler.load(str(path))
    assert sampler.bytes
    return sampler


def test_greedy_text_in_and_out(sampler):
    assert spelled(14) == "a日é\na日é\n".encode()
    assert sampler.sample(14, temperature=0) == "a日é\na日é\n"
    assert sampler.sample(14, temperature=0, raw=True) == spelled(14)
    for prime in ("日", "日".encode(), bytearray("日".encode())):
        assert sampler.sample(7, prime=prime, temperature=0) == "é\na日"
    assert sampler.sample(2, temperature=0) == "a\ufffd"  # n counts bytes: 日 cut off
    assert sampler.sample(2, temperature=0, raw=True) == b"a\xe6"
    cut = "日".encode()[:2]  # a prime that leaves 日 unfinished: the sample finishes it
    assert sampler.sample(5, prime=cut, temperature=0) == "日é\na"
    assert "".join(sampler.stream(5, prime=cut, temperature=0, chunk_size=1)) == "日é\na"
    assert sampler.beam(5, prime=cut, k=2) == "日é\na"
    assert sampler.sample(5, prime=cut, temperature=0, raw=True) == b"\xa5" + "é\na".encode()


@pytest.mark.parametrize("chunk_size", [1, 2, 3, 5])
def test_stream_decodes_across_pieces(sampler, chunk_size):
    pieces = list(sampler.stream(28, temperature=0, chunk_size=chunk_size))
    assert "".join(pieces) == sampler.sample(28, temperature=0) == spelled(28).decode()
    assert "\ufffd" not in "".join(pieces)  # a character split between pieces comes whole
    raw = list(sampler.stream(28, temperature=0, chunk_size=chunk_size, raw=True))
    assert b"".join(raw) == spelled(28) and all(len(p) <= chunk_size for p in raw)


def test_stop_texts_are_text_or_bytes(sampler):
    assert sampler.sample(100, temperature=0, stop="é") == "a日é"
    assert sampler.sample(100, temperature=0, stop=[b"\xc3\xa9", "\n"]) == "a日é"
    assert list(sampler.stream(100, temperature=0, stop="日", chunk_size=1)) == ["a", "", "",
                                                                                  "日", ""]
    assert sampler.sample_batch(3, 100, temperature=0, stop="é", raw=True) == ["a日é".encode()] * 3


def test_beams_and_log_prob_read_bytes_too(sampler):
    assert sampler.beam(14, k=2) == "a日é\na日é\n"
    assert sampler.beam(14, prime=b"a", k=2, stop="\n", raw=True) == "日é\n".encode()
    (text, logp), = sampler.beams(3, prime="日", k=1)
    assert text == "é\n" and -1e-5 < logp <= 0
    total, per_char = sampler.log_prob("a日")
    assert per_char.shape == (4,) and -1e-5 < total <= 0  # one score per byte, each likely
    assert sampler.log_prob(b"a\xe6\x97\xa5")[0] == total
    assert sampler.log_prob("日")[0] < -10  # not after the start "\n"


def test_same_text_as_the_bytes_sampler_before(sampler):
    """Before, callers fed a byte model one character per byte (latin-1) and decoded what
    came back: the same seed gives the same text now."""
    plain = Sampler(sampler.model, VOCAB)  # no byte handling: the characters as they are
    latin = "日本".encode().decode("latin-1")
    for seed in range(3):
        before = plain.sample(200, prime=latin, temperature=1.5, seed=seed)
        now = sampler.sample(200, prime="日本", temperature=1.5, seed=seed)
        assert now == before.encode("latin-1").decode("utf-8", "replace")
        assert sampler.sample(200, prime="日本", temperature=1.5, seed=seed,
                              raw=True) == before.encode("latin-1")


def test_bytes_and_raw_are_for_byte_models_only(sampler):
    text_model = Sampler(sampler.model, VOCAB)
    for call in (lambda: text_model.sample(3, prime=b"a"), lambda: text_model.log_prob(b"a"),
                 lambda: text_model.sample(3, stop=[b"a"])):
        with pytest.raises(UsageError, match="reads text, not bytes"):
            call()
    for call in (lambda: text_model.sample(3, raw=True), lambda: text_model.stream(3, raw=True),
                 lambda: text_model.beams(3, raw=True)):
        with pytest.raises(UsageError, match="drop raw"):
            call()
    with pytest.raises(UsageError, match="no UTF-8 bytes"):
        sampler.sample(3, prime="a\udcff")


def test_cli_passes_text_and_bytes_through(path, tmp_path):
    def run(*args):
        return CliRunner().invoke(cli, ["sample", str(path), *map(str, args)])

    done = run("-n", 14, "--temperature", 0, "--no-stream")
    assert done.exit_code == 0 and done.stdout == "a日é\na日é\n\n"
    done = run("-n", 7, "--temperature", 0, "--prime", "日", "--raw")
    assert done.exit_code == 0 and done.stdout_bytes == "日".encode() + spelled(7, "日")
    prime = tmp_path / "prime.bin"
    prime.write_bytes(b"\xff\xe6\x97\xa5")  # an invalid byte, then 日
    done = run("-n", 7, "--temperature", 0, "--prime-file", prime, "--stream")
    assert done.exit_code == 0 and done.stdout == "\ufffd日é\na日\n"
    prime.write_bytes("日".encode()[:2])  # 日 unfinished: the sample's first byte finishes it
    done = run("-n", 8, "--temperature", 0, "--prime-file", prime, "--no-stream")
    assert done.exit_code == 0 and done.stdout == "日é\na日\n"
    done = run("-n", 99, "--beam", 2, "--num-samples", 2, "--stop", "é", "--raw")
    assert done.exit_code == 0 and done.stdout_bytes.split(b"\n")[0] == "a日é".encode()
