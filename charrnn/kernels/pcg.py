"""One random stream per row: NumPy's default bit generator, PCG64, written out so that a
compiled loop can hold many of them in one array (a list of np.random.Generator objects does
not compile). A row's stream is np.random.default_rng(seed)'s, draw for draw: what a request
alone would draw, whichever rows run beside it.

A stream is 4 uint64 words, (state_hi, state_lo, inc_hi, inc_lo), the 128-bit LCG state and
increment of O'Neill's PCG XSL RR 128/64, which NumPy's PCG64 is: each draw steps
state = state * MULTIPLIER + inc (mod 2^128), then outputs rotr64(hi ^ lo, hi >> 58); a double
in [0, 1) is the output's top 53 bits over 2^53, as Generator.random() makes it.
"""
import numpy as np
from numba import types
from numba.extending import overload

from . import kernel

WORDS = 4  # uint64 words per stream
_MULT_HI, _MULT_LO = np.uint64(2549297995355413924), np.uint64(4865540595714422341)
_MASK32 = np.uint64(0xFFFFFFFF)
_U32, _U58, _U63, _U11 = np.uint64(32), np.uint64(58), np.uint64(63), np.uint64(11)
_SCALE = 1.0 / 9007199254740992.0  # 2^-53


def streams(seeds):
    """(B, WORDS) uint64: one stream per seed (an int, or None for fresh entropy), each
    np.random.default_rng(seed)'s."""
    out = np.empty((len(seeds), WORDS), np.uint64)
    for b, seed in enumerate(seeds):
        state = np.random.default_rng(seed).bit_generator.state["state"]
        s, inc = state["state"], state["inc"]
        out[b] = (s >> 64, s & (2 ** 64 - 1), inc >> 64, inc & (2 ** 64 - 1))
    return out


@kernel
def _mul_hi(a, b):
    """The high 64 bits of the 128-bit product a * b, uint64s, through 32-bit halves."""
    a_lo, a_hi, b_lo, b_hi = a & _MASK32, a >> _U32, b & _MASK32, b >> _U32
    lo_lo, hi_lo, lo_hi = a_lo * b_lo, a_hi * b_lo, a_lo * b_hi
    cross = (lo_lo >> _U32) + (hi_lo & _MASK32) + lo_hi
    return a_hi * b_hi + (hi_lo >> _U32) + (cross >> _U32)


@kernel
def next_double(stream):
    """The next double in [0, 1) from stream (WORDS,) uint64, which advances in place."""
    hi, lo, inc_hi, inc_lo = stream[0], stream[1], stream[2], stream[3]
    new_hi = hi * _MULT_LO + lo * _MULT_HI + _mul_hi(lo, _MULT_LO)
    new_lo = lo * _MULT_LO
    lo = new_lo + inc_lo
    hi = new_hi + inc_hi + (np.uint64(1) if lo < new_lo else np.uint64(0))  # the carry
    stream[0], stream[1] = hi, lo
    x, rot = hi ^ lo, hi >> _U58
    out = (x >> rot) | (x << ((np.uint64(64) - rot) & _U63))
    return (out >> _U11) * _SCALE


def uniform(rng):
    """A double in [0, 1) from rng: an np.random.Generator, or one row's stream (WORDS,)."""


@overload(uniform, inline="always")
def _uniform(rng):
    if isinstance(rng, types.Array):
        return lambda rng: next_double(rng)
    return lambda rng: rng.random()
