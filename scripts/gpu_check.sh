#!/usr/bin/env bash
# The check for a lent machine (issue 45), in one command and under 8 minutes:
#   1. on an NVIDIA GPU: the CUDA tests on the hardware (not the simulator), then the GPU
#      benchmark (scripts/bench_gpu.py);
#   2. where the CPU has AVX512-BF16 (GPU hosts often do): the bfloat16 tests, whose native
#      cases skip elsewhere, scripts/bench_bf16.py at 1 and 2 threads, then PyTorch's float32
#      and bfloat16 autocast beside it when torch imports.
# Each step's time limit is cut to what is left of the 8 minutes. Writes gpu_check/ (or $OUT/,
# as on a lent device machine): nvidia-smi.txt, tests.txt, bench.{json,md}, cpu.txt,
# bf16_tests.txt, bf16_bench_{1,2}.md, bf16_torch.md. Exits non-zero when a step that ran failed.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${OUT:-gpu_check}"
mkdir -p "$out"
deadline=$((SECONDS + 470))
left() { local s=$((deadline - SECONDS)); echo $((s < $1 ? (s > 0 ? s : 1) : $1)); }
# A machine that cannot reach PyPI (a lent device: its image holds numba-cuda and the rest)
# runs this checkout with its own packages; any other installs the extras.
if python3 -c "import numba.cuda, numpy, scipy, click, tqdm, threadpoolctl, safetensors, \
matplotlib, pytest, hypothesis" 2>/dev/null; then
  export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
else
  python3 -m venv .venv-gpu && . .venv-gpu/bin/activate \
    && pip install -q -e '.[test,cuda]' || exit 1
fi
status=0
if nvidia-smi > "$out/nvidia-smi.txt" 2>&1; then
  head -20 "$out/nvidia-smi.txt"
  NUMBA_ENABLE_CUDASIM=0 timeout "$(left 220)" python3 -m pytest -q tests/test_cuda_device.py \
    tests/test_cuda_kernels.py tests/test_cuda_model.py tests/test_cuda_ptx.py 2>&1 \
    | tee "$out/tests.txt" | tail -5
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  NUMBA_ENABLE_CUDASIM=0 timeout "$(left 180)" python3 scripts/bench_gpu.py \
    --json "$out/bench.json" | tee "$out/bench.md"
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
else
  echo "no NVIDIA GPU here (nvidia-smi failed): the GPU steps did not run"
fi
lscpu > "$out/cpu.txt" 2>&1
if grep -qw avx512_bf16 /proc/cpuinfo; then
  timeout "$(left 90)" python3 -m pytest -q -rs tests/test_bf16.py tests/test_precision.py \
    2>&1 | tee "$out/bf16_tests.txt" | tail -5
  [ "${PIPESTATUS[0]}" = 0 ] || status=1
  for threads in 1 2; do
    timeout "$(left 120)" python3 scripts/bench_bf16.py --configs gru-2x512,lstm-2x512 \
      --repeats 3 --threads "$threads" | tee "$out/bf16_bench_$threads.md"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
  done
  if python3 -c "import torch" 2>/dev/null; then  # last: its bf16 speed is the unknown
    timeout "$(left 120)" python3 scripts/bench_bf16.py --configs gru-2x512 --repeats 2 \
      --threads 1 --vs-torch | tee "$out/bf16_torch.md"
    [ "${PIPESTATUS[0]}" = 0 ] || status=1
  fi
else
  echo "this CPU lacks AVX512-BF16: the bfloat16 steps did not run"
fi
echo "exit $status after ${SECONDS} s; figures in $out/"
exit $status
