"""Vocab: Unicode round trips, unknown-character policies, strict JSON round trip, fast encode."""

import json

import numpy as np
import pytest

from charrnn.errors import CharRNNError, UsageError
from charrnn.vocab import Vocab

UNICODE_TEXT = (
    "café naïve Ångström\n"
    "中文字符，日本語のかな、한국어\n"
    "emoji 😀🎉 👍🏽 family 👨\u200d👩\u200d👧\n"
    "combining e\u0301 a\u0308 n\u0303\ttab"
)


def test_from_text_is_sorted_unique_code_points():
    v = Vocab.from_text("banana 😀")
    assert v.chars == (" ", "a", "b", "n", "😀")
    assert len(v) == 5
    assert Vocab.from_text("banana 😀") == v


def test_each_code_point_is_one_character():
    v = Vocab.from_text("e\u0301👍🏽")
    assert set(v.chars) == {"e", "\u0301", "👍", "🏽"}


@pytest.mark.parametrize("text", [UNICODE_TEXT, "x", "\ud800 lone surrogate"])
def test_unicode_round_trip(text):
    v = Vocab.from_text(text)
    ids = v.encode(text)
    assert ids.dtype == np.int32 and ids.shape == (len(text),)
    assert v.decode(ids) == text
    assert [v.chars[i] for i in ids] == list(text)


def test_constructor_keeps_given_order():
    v = Vocab(["z", "é", "a"])
    assert v.encode("aéz").tolist() == [2, 1, 0]
    assert v.decode([0, 1, 2]) == "zéa"
    assert "é" in v and "b" not in v and "ab" not in v


@pytest.mark.parametrize(
    "chars, words",
    [
        (["a", "a"], "appear twice"),
        (["a", "bc"], "'bc'"),
        (["a", ""], "not a single character"),
        (["a", 1], "entry 1"),
        ([], "empty"),
    ],
)
def test_constructor_rejects_bad_chars(chars, words):
    with pytest.raises(UsageError, match=words):
        Vocab(chars)


def test_empty_text_has_no_vocabulary():
    with pytest.raises(UsageError, match="empty"):
        Vocab.from_text("")


def test_unknown_error_names_characters_and_fix():
    v = Vocab.from_text("abc")
    with pytest.raises(UsageError) as info:
        v.encode("abxc\ny😀x")
    msg = str(info.value)
    assert "\n" not in msg
    assert "'x'" in msg and "'\\n'" in msg and "'😀'" in msg and "'y'" in msg
    assert "5 characters (4 distinct)" in msg
    assert "--unknown skip" in msg


def test_unknown_error_caps_the_list():
    v = Vocab.from_text("a")
    with pytest.raises(UsageError) as info:
        v.encode("a" + "".join(chr(0x4E00 + i) for i in range(25)))
    msg = str(info.value)
    assert "and 15 more" in msg
    assert msg.count("'") == 20  # ten quoted characters


def test_unknown_skip_drops_characters():
    v = Vocab.from_text("abc")
    ids = v.encode("xaybzc😀", unknown="skip")
    assert ids.dtype == np.int32
    assert v.decode(ids) == "abc"
    assert v.encode("xyz", unknown="skip").shape == (0,)


def test_unknown_chars_counts_most_frequent_first():
    v = Vocab.from_text("abc")
    assert v.unknown_chars("abc") == {}
    counts = v.unknown_chars("a😀zz😀😀é")
    assert counts == {"😀": 3, "z": 2, "é": 1}
    assert list(counts) == ["😀", "z", "é"]


def test_unknown_policy_is_checked():
    with pytest.raises(UsageError, match="'error' or 'skip'"):
        Vocab.from_text("a").encode("a", unknown="ignore")


def test_decode_rejects_out_of_range_ids():
    v = Vocab.from_text("ab")
    assert v.decode([]) == ""
    for bad in ([2], [-1]):
        with pytest.raises(ValueError):
            v.decode(bad)


def test_dict_round_trip_through_json():
    v = Vocab.from_text(UNICODE_TEXT)
    d = json.loads(json.dumps(v.to_dict()))
    assert d == {"chars": list(v.chars)}
    w = Vocab.from_dict(d)
    assert w == v and w.chars == v.chars
    assert np.array_equal(w.encode(UNICODE_TEXT), v.encode(UNICODE_TEXT))


@pytest.mark.parametrize(
    "d",
    [
        None,
        ["a", "b"],
        {},
        {"chars": "abc"},
        {"chars": None},
        {"chars": []},
        {"chars": ["a", 1]},
        {"chars": ["a", None]},
        {"chars": ["a", "bc"]},
        {"chars": ["a", ""]},
        {"chars": ["a", "b", "a"]},
    ],
)
def test_from_dict_is_strict(d):
    with pytest.raises(CharRNNError) as info:
        Vocab.from_dict(d)
    assert "stored vocabulary is invalid" in str(info.value)
    assert "\n" not in str(info.value)


def test_encode_matches_naive_mapping_on_large_text():
    rng = np.random.default_rng(0)
    pool = np.array(
        [ord(c) for c in "\n\t abcxyzABC019éüß中文字😀🎉"] + [0x10FFFF, 0xFFFF, 0x10000]
    )
    text = "".join(map(chr, rng.choice(pool, size=300_000)))
    vocab_chars = [chr(c) for c in rng.permutation(pool)[: len(pool) - 6]]
    v = Vocab(vocab_chars)
    lookup = {c: i for i, c in enumerate(vocab_chars)}

    naive = np.array([lookup[c] for c in text if c in lookup], dtype=np.int32)
    assert np.array_equal(v.encode(text, unknown="skip"), naive)

    missing = {c: text.count(c) for c in set(text) - set(vocab_chars)}
    assert v.unknown_chars(text) == missing

    full = Vocab.from_text(text)
    full_lookup = {c: i for i, c in enumerate(full.chars)}
    assert np.array_equal(full.encode(text), [full_lookup[c] for c in text])
