"""The fresh processes of scripts/bench.py (run by it, not by hand).

    python scripts/_bench_child.py memory charrnn|torch THREADS  -> RSS by stage, KiB (JSON)
    python scripts/_bench_child.py compile THREADS               -> one LSTM step and a sample
"""
import json
import resource
import sys

import numpy as np

import bench


def rss_kib():
    return next(int(line.split()[1]) for line in open("/proc/self/status")
                if line.startswith("VmRSS:"))


def memory(framework, threads):
    """Train bench.MEMORY_CONFIG for bench.MEMORY_STEPS; print JSON {stage: KiB}: RSS after
    the imports, for charrnn also once Numba's JIT runtime has started (the first kernel
    loaded from the cache), and the peak (ru_maxrss) over the whole run."""
    stages = {}
    if framework == "torch":
        import torch
        stages["imports"] = rss_kib()
        torch.set_num_threads(threads)
        run = bench.torch_trainer(bench.torch_model(bench.MEMORY_CONFIG), bench.batches())
    else:
        from charrnn.kernels.common import scale_by_mask
        bench.set_threads(threads, vs_torch=False)
        stages["imports"] = rss_kib()
        scale_by_mask(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.float32))
        stages["jit_runtime"] = rss_kib()
        model = bench.charrnn_model(bench.MEMORY_CONFIG)[0]
        run = bench.trainer(bench.charrnn_step(model), bench.batches())
    run(bench.MEMORY_STEPS)
    stages["peak"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(json.dumps(stages))


def compile_once(threads):
    """Import charrnn, then one LSTM training step and a 100-character sample."""
    bench.set_threads(threads, vs_torch=False)
    from charrnn import Sampler
    model, vocab = bench.charrnn_model(bench.MEMORY_CONFIG)
    bench.trainer(bench.charrnn_step(model), bench.batches(count=1))(1)
    Sampler(model, vocab).sample(100, seed=0)


if __name__ == "__main__":
    if sys.argv[1] == "memory":
        memory(sys.argv[2], int(sys.argv[3]))
    else:
        compile_once(int(sys.argv[2]))
