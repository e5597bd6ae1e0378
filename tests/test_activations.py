"""The float32 approximations of exp, tanh and sigmoid (kernels.common) against float64, over
dense grids of every input range they see; float64 uses the math library."""
import math

import numpy as np
import pytest
from numba import njit

from charrnn.kernels import common

FUNCTIONS = {"exp": (common.exp, np.exp), "tanh": (common.tanh, np.tanh),
             "sigmoid": (common.sigmoid, lambda x: 1.0 / (1.0 + np.exp(-x)))}


def _elementwise(f):
    @njit
    def apply(x, out):
        for i in range(x.shape[0]):
            out[i] = f(x[i])
    return apply


APPLY = {name: _elementwise(f) for name, (f, _) in FUNCTIONS.items()}


def run(name, x):
    out = np.empty_like(x)
    APPLY[name](x, out)
    return out


def grid(lo, hi, n=2_000_001):
    return np.linspace(lo, hi, n).astype(np.float32)


def test_float32_exp_relative_error():
    x = grid(-87.0, 88.0)
    want = np.exp(x.astype(np.float64))
    assert np.max(np.abs(run("exp", x) - want) / want) < 2e-7


def test_float32_exp_edges():
    x = np.array([0.0, -200.0, -np.inf, 1.0], np.float32)
    got = run("exp", x)
    assert got[0] == 1.0
    assert 0.0 < got[1] < 2e-38 and 0.0 < got[2] < 2e-38  # clamped at -87, never NaN
    assert got[3] == pytest.approx(math.e, rel=2e-7)


@pytest.mark.parametrize("name", ["tanh", "sigmoid"])
def test_float32_activation_absolute_error(name):
    x = grid(-30.0, 30.0)
    got = run(name, x)
    want = FUNCTIONS[name][1](x.astype(np.float64))
    assert np.max(np.abs(got - want)) < 3.3e-7
    assert np.all(np.abs(got) <= 1.0)


@pytest.mark.parametrize("name", list(FUNCTIONS))
def test_float64_is_the_math_library(name):
    x = np.linspace(-20.0, 20.0, 4001)
    np.testing.assert_allclose(run(name, x), FUNCTIONS[name][1](x), rtol=1e-15, atol=0)
