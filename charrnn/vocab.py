"""Vocab: the mapping between characters (Unicode code points) and integer ids.

An id is the position of a character in ``Vocab.chars``. Encoding and decoding work on whole
arrays of code points (via UTF-32), so multi-megabyte texts never loop per character in Python.
N below is a text length in characters, V the vocabulary size.
"""

import reprlib
from collections import Counter
from collections.abc import Sequence

import numpy as np

from charrnn.errors import CharRNNError, UsageError

UNKNOWN_POLICIES = ("error", "skip")
_SHOWN = 10  # at most this many offending characters are named in an error message


def _code_points(text: str) -> np.ndarray:
    """The code points of ``text``, shape (N,), uint32. Lone surrogates pass through."""
    return np.frombuffer(text.encode("utf-32-le", errors="surrogatepass"), dtype="<u4")


def _text_of(codes: np.ndarray) -> str:
    """The inverse of ``_code_points``: a string from code points, shape (N,)."""
    return codes.astype("<u4").tobytes().decode("utf-32-le", errors="surrogatepass")


def _problem(chars: tuple) -> str | None:
    """What is wrong with ``chars`` as a vocabulary, or None if it is fine."""
    if not chars:
        return "it is empty"
    for i, c in enumerate(chars):
        if not isinstance(c, str) or len(c) != 1:
            return f"entry {i} is {reprlib.repr(c)}, not a single character"
    if len(set(chars)) != len(chars):
        dups = [repr(c) for c, k in Counter(chars).items() if k > 1]
        return f"{len(dups)} characters appear twice or more ({', '.join(dups[:_SHOWN])})"
    return None


class Vocab:
    """An ordered set of distinct characters; ``chars[i]`` has id ``i``."""

    def __init__(self, chars: Sequence[str]):
        chars = tuple(chars)
        problem = _problem(chars)
        if problem:
            raise UsageError(f"bad vocabulary: {problem}; give distinct one-character strings")
        self._chars = chars
        self._charset = frozenset(chars)
        self._codes = _code_points("".join(chars))  # (V,) code point of each id
        order = np.argsort(self._codes, kind="stable")
        self._sorted_codes = self._codes[order]  # (V,) ascending
        self._sorted_ids = order.astype(np.int32)  # (V,) id of each sorted code point

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The sorted distinct characters of ``text`` (ids ordered by code point)."""
        return cls(tuple(_text_of(np.unique(_code_points(text)))))

    @classmethod
    def from_dict(cls, d: object) -> "Vocab":
        """Rebuild from ``to_dict`` output, which may come from an untrusted file.

        Raises ``CharRNNError`` on anything but ``{"chars": [one-character strings, distinct]}``.
        """
        if not isinstance(d, dict) or not isinstance(d.get("chars"), list):
            problem = 'it is not of the form {"chars": [...]}'
        else:
            problem = _problem(tuple(d["chars"]))
        if problem:
            raise CharRNNError(
                f"stored vocabulary is invalid: {problem}; "
                "the file is damaged or was not written by charrnn"
            )
        return cls(d["chars"])

    def to_dict(self) -> dict:
        """A JSON-friendly form: ``{"chars": [...]}``."""
        return {"chars": list(self._chars)}

    @property
    def chars(self) -> tuple[str, ...]:
        """The characters, in id order."""
        return self._chars

    def __len__(self) -> int:
        return len(self._chars)

    def __contains__(self, c: object) -> bool:
        return c in self._charset

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Vocab) and self._chars == other._chars

    def __hash__(self) -> int:
        return hash(self._chars)

    def __repr__(self) -> str:
        return f"Vocab({len(self)} chars)"

    def _find(self, codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Ids of ``codes`` (N,) int32, and a mask (N,) bool of which are in the vocabulary.

        Ids where the mask is False are meaningless.
        """
        pos = np.searchsorted(self._sorted_codes, codes)  # (N,)
        np.minimum(pos, len(self._chars) - 1, out=pos)
        return self._sorted_ids[pos], self._sorted_codes[pos] == codes

    def unknown_chars(self, text: str) -> dict[str, int]:
        """Counts of the characters of ``text`` not in the vocabulary, most frequent first."""
        codes = _code_points(text)
        codes = codes[~self._find(codes)[1]]
        uniq, counts = np.unique(codes, return_counts=True)
        order = np.argsort(-counts, kind="stable")  # ties stay in code point order
        return dict(zip(_text_of(uniq[order]), counts[order].tolist()))

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        """The ids of ``text``, shape (N,) int32.

        ``unknown`` says what to do with characters not in the vocabulary: ``"error"`` raises
        ``UsageError`` naming them, ``"skip"`` drops them.
        """
        if unknown not in UNKNOWN_POLICIES:
            raise UsageError(f"unknown must be 'error' or 'skip', not {unknown!r}")
        ids, known = self._find(_code_points(text))
        if known.all():
            return ids
        if unknown == "skip":
            return ids[known]
        missing = self.unknown_chars(text)
        shown = ", ".join(repr(c) for c in list(missing)[:_SHOWN])
        more = len(missing) - _SHOWN
        raise UsageError(
            f"{sum(missing.values())} characters ({len(missing)} distinct) are not in the "
            f"vocabulary: {shown}{f' and {more} more' if more > 0 else ''}; "
            "pass --unknown skip to drop them"
        )

    def decode(self, ids) -> str:
        """The text for a sequence of ids, shape (N,)."""
        ids = np.asarray(ids)
        if ids.size == 0:
            return ""
        if ids.min() < 0 or ids.max() >= len(self._chars):
            raise ValueError(f"ids must lie in [0, {len(self)}), got {ids.min()}..{ids.max()}")
        return _text_of(self._codes[ids])
