"""Counter-based random numbers for the GPU: dropout masks and sampling draws are hashes of
(key, index), so no generator state lives on the device and nothing is transferred for them.

hash32 is Chris Wellons' "lowbias32" integer hash, a bijection on 32-bit values, computed in
int64 (no unsigned types: NumPy-style int/uint promotion would turn the arithmetic into floats).
The host draws the keys: one per layer per batch from the model's NumPy generator for dropout,
one per request from the seed for sampling, so runs repeat exactly on the same device. The
streams are not NumPy's, so a seeded GPU run draws different masks and text than a CPU run.
"""
from numba import cuda

from . import grid1

_MASK = 0xFFFFFFFF


def hash32(x):
    """A 32-bit integer hash (lowbias32); plain Python here, a device function below."""
    x &= _MASK
    x ^= x >> 16
    x = (x * 0x7FEB352D) & _MASK
    x ^= x >> 15
    x = (x * 0x846CA68B) & _MASK
    x ^= x >> 16
    return x


_hash32 = cuda.jit(device=True)(hash32)


def key(seed):
    """A 32-bit stream key from any non-negative integer seed (hashed 32 bits at a time)."""
    k = hash32(0x9E3779B9)
    seed = int(seed)
    while True:
        k = hash32(k ^ hash32(seed & _MASK))
        seed >>= 32
        if not seed:
            return k


@cuda.jit(device=True)
def bits(k, counter):
    """32 random bits, number `counter` (>= 0, < 2**32) of stream k."""
    return _hash32(k ^ _hash32(counter))


@cuda.jit(device=True)
def uniform(k, counter):
    """A float64 in [0, 1) with 53 random bits, from counters 2*counter and 2*counter + 1."""
    hi = bits(k, 2 * counter) >> 5  # 27 bits
    lo = bits(k, 2 * counter + 1) >> 6  # 26 bits
    return (hi * 67108864 + lo) * 1.1102230246251565e-16  # (hi * 2**26 + lo) / 2**53


@cuda.jit
def _mask_kernel(mask, k, threshold, scale):
    zero = mask.dtype.type(0.0)
    for i in range(cuda.grid(1), mask.shape[0], cuda.gridsize(1)):
        mask[i] = scale if (bits(k, i) >> 8) < threshold else zero


def dropout_mask(mask, seed, keep):
    """Inverted-dropout multipliers: each element of the contiguous device array mask is
    1 / keep with probability keep, else 0 (24-bit resolution), from the stream of `seed`."""
    flat = mask.reshape(mask.size)
    blocks, threads = grid1(flat.size)
    _mask_kernel[blocks, threads](flat, key(seed), int(round(keep * (1 << 24))),
                                  mask.dtype.type(1.0 / keep))


@cuda.jit
def _uniforms_kernel(u, k, start):
    for b in range(cuda.grid(1), u.shape[0], cuda.gridsize(1)):
        u[b] = uniform(k, (start + b) & 0x7FFFFFFF)


def uniforms(u, seed, start):
    """u[b] = the uniform number start + b of the stream of `seed`, for a float64 device array."""
    blocks, threads = grid1(u.shape[0])
    _uniforms_kernel[blocks, threads](u, key(seed), int(start))
