#!/usr/bin/env bash
# The GPU check, for a machine with an NVIDIA GPU (issue 45): installs charrnn with the [cuda]
# and [test] extras into .venv-gpu (unless the machine has them already), runs the CUDA tests
# on the hardware (not the simulator), then the GPU benchmark (scripts/bench_gpu.py). Writes gpu_check/{tests.txt,bench.json,
# bench.md} (or $OUT/... when OUT is set, as on a lent device machine). Under 8 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
nvidia-smi | tee "$out/nvidia-smi.txt"
# A GPU machine that cannot reach PyPI (a lent device: its image holds numba-cuda and the
# rest) runs this checkout with its own packages; any other installs the extras.
if python3 -c "import numba.cuda, numpy, scipy, click, tqdm, threadpoolctl, safetensors, \
matplotlib, pytest, hypothesis" 2>/dev/null; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  python3 -m venv .venv-gpu && . .venv-gpu/bin/activate \
    && pip install -q -e '.[test,cuda]' || exit 1
fi
NUMBA_ENABLE_CUDASIM=0 timeout 240 python3 -m pytest -q tests/test_cuda_device.py \
  tests/test_cuda_kernels.py tests/test_cuda_model.py tests/test_cuda_ptx.py 2>&1 \
  | tee "$out/tests.txt" | tail -5
tests=${PIPESTATUS[0]}
NUMBA_ENABLE_CUDASIM=0 timeout 200 python3 scripts/bench_gpu.py --json "$out/bench.json" \
  | tee "$out/bench.md"
bench=${PIPESTATUS[0]}
echo "tests exit $tests, benchmark exit $bench; figures in $out/"
[ "$tests" = 0 ] && [ "$bench" = 0 ]
