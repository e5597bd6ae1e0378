"""The fresh processes of scripts/bench.py (run by it, not by hand).

    python scripts/_bench_child.py memory charrnn|torch THREADS  -> prints peak RSS in KiB
    python scripts/_bench_child.py compile THREADS               -> one LSTM step and a sample
"""
import resource
import sys

import bench


def memory(framework, threads):
    """Train bench.MEMORY_CONFIG for bench.MEMORY_STEPS; print ru_maxrss (KiB). PyTorch's
    number includes `import torch`; charrnn's, its imports and cached kernels."""
    if framework == "torch":
        import torch
        torch.set_num_threads(threads)
        run = bench.torch_trainer(bench.torch_model(bench.MEMORY_CONFIG), bench.batches())
    else:
        bench.set_threads(threads, vs_torch=False)
        model = bench.charrnn_model(bench.MEMORY_CONFIG)[0]
        run = bench.trainer(bench.charrnn_step(model), bench.batches())
    run(bench.MEMORY_STEPS)
    print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


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
