"""Every charrnn.cuda kernel through the real CUDA compiler (numba-cuda's NVVM, to PTX for
sm_80; no GPU needed), in float32 and float64; float32 builds must do no float64 arithmetic
except where the kernel accumulates in float64 on purpose, as its CPU twin does.

Skipped unless numba-cuda is installed (`pip install 'charrnn[cuda]'`); it runs in a child
process because the test session uses the CUDA simulator.
"""
import importlib.util
import os
import re
import subprocess
import sys

import pytest

# float32 kernels allowed float64 arithmetic: float64 accumulators and the sampler's float64
# probabilities (all as on the CPU), and the float64 uniforms.
FLOAT64_BY_DESIGN = {"common._block_sums", "common._sum_partials", "common._add_row_sums",
                     "common._softmax_cross_entropy", "random._uniforms_kernel",
                     "sampling._pick", "sampling._log_prob_row0"}


@pytest.mark.skipif(importlib.util.find_spec("numba_cuda") is None,
                    reason="numba-cuda (the [cuda] extra) is not installed")
def test_every_kernel_compiles_and_float32_stays_float32():
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "0"}
    result = subprocess.run([sys.executable, __file__], env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr


def _signatures(dt):
    from numba import types as t

    from charrnn.cuda import (blas, common, gru, lstm, mingru, minlstm, optim, random, rnn,
                              sampling, scan)

    i32, i64, b1, f8 = t.int32, t.int64, t.boolean, t.float64
    A1, A2, A3, C1, ids = dt[:], dt[:, :], dt[:, :, :], dt[::1], i32[:]
    return {
        "blas.gemm": (blas._kernel(dt.name), (b1, b1, dt, A2, A2, dt, A2)),
        "common._fill": (common._fill, (C1, dt)),
        "common._multiply": (common._multiply, (C1, C1, C1)),
        "common._block_sums": (common._block_sums, (C1, b1, f8[::1])),
        "common._sum_partials": (common._sum_partials, (f8[::1], i64, f8[::1], i64, b1)),
        "common._fill_rows": (common._fill_rows, (A2, A1)),
        "common._add_row_sums": (common._add_row_sums, (A1, A2)),
        "common._embedding_forward": (common._embedding_forward, (A2, A2, ids)),
        "common._embedding_backward": (common._embedding_backward, (A2, A2, ids)),
        "common._onehot_forward": (common._onehot_forward, (A2, A2, A1, ids)),
        "common._onehot_backward": (common._onehot_backward, (A2, A2, ids)),
        "common._softmax_cross_entropy": (common._softmax_cross_entropy,
                                          (A2, ids, dt, b1, f8[::1])),
        "common._scale_by_mask": (common._scale_by_mask, (C1, C1)),
        "lstm._forward": (lstm._forward, (A2, A1, A2, A2, A2)),
        "lstm._backward": (lstm._backward, (A2,) * 5),
        "gru._forward": (gru._forward, (A2,) * 4),
        "gru._backward": (gru._backward, (A2,) * 5),
        "rnn._forward": (rnn._forward, (A2, A1, A2, b1)),
        "rnn._backward": (rnn._backward, (A2, A2, b1)),
        "mingru._coefficients": (mingru._coefficients, (A2, A2)),
        "mingru._coefficients_backward": (mingru._coefficients_backward, (A2, A2)),
        "minlstm._coefficients": (minlstm._coefficients, (A2, A2)),
        "minlstm._coefficients_backward": (minlstm._coefficients_backward, (A2, A2)),
        "scan._step": (scan._step, (A2,) * 3),
        "scan._step_backward": (scan._step_backward, (A2,) * 4),
        "scan._totals": (scan._totals, (A3, i64, A3)),
        "scan._carry": (scan._carry, (A3, A2, A3)),
        "scan._chunk_states": (scan._chunk_states, (A3, A3, i64, A3)),
        "scan._totals_backward": (scan._totals_backward, (A3, A3, i64, A3)),
        "scan._carry_backward": (scan._carry_backward, (A3, A3)),
        "scan._chunk_grads": (scan._chunk_grads, (A3, A3, A3, A3, i64, A2)),
        "optim._scale": (optim._scale, (C1, dt)),
        "optim._clip_value": (optim._clip_value, (C1, dt)),
        "optim._adam": (optim._adam, (C1,) * 4 + (dt,) * 6),
        "optim._rmsprop": (optim._rmsprop, (C1,) * 3 + (dt,) * 3),
        "optim._sgd": (optim._sgd, (C1,) * 3 + (dt,) * 2),
        "optim._adagrad": (optim._adagrad, (C1,) * 3 + (dt,) * 2),
        "random._mask_kernel": (random._mask_kernel, (C1, i64, i64, dt)),
        "random._uniforms_kernel": (random._uniforms_kernel, (f8[::1], i64, i64)),
        "sampling._pick": (sampling._pick, (A2, f8[:, :], i32[:, :], f8[:], i32[:], i64[:, :],
                                            i64, f8, i64, f8)),
        "sampling._log_prob_row0": (sampling._log_prob_row0, (A2, ids, i64, f8[:])),
        "sampling._set_ids": (sampling._set_ids, (i32[:], ids, i64)),
    }


def main():
    from numba import cuda
    from numba import types as t
    from numba.cuda import dispatcher

    class Device:  # device functions ask the current device for its compute capability
        compute_capability = (8, 0)

    dispatcher.get_current_device = Device  # compile only: no GPU needed
    f64_arith = re.compile(r"^\s*(?!ld|st|mov|cvt)[a-z]+[.\w]*\.f64\b")
    failures = []
    for dt in (t.float32, t.float64):
        for name, (kernel, sig) in _signatures(dt).items():
            try:
                ptx, _ = cuda.compile_ptx(kernel.py_func, sig, cc=(8, 0))
            except Exception as e:  # noqa: BLE001  (report every kernel, then fail)
                failures.append(f"{name} ({dt}) does not compile: {e}")
                continue
            ops = [line.strip() for line in ptx.splitlines() if f64_arith.match(line)]
            if dt == t.float32 and ops and name not in FLOAT64_BY_DESIGN:
                failures.append(f"{name} (float32) does float64 arithmetic: {ops[:5]}")
            print(f"{name} ({dt}): {len(ops)} float64 instructions")
    print("\n".join(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
