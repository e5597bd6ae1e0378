"""A new process loads every kernel it needs from Numba's disk cache: training and sampling
compile nothing the second time (a kernel whose cache key changes per process, e.g. a closure
holding another kernel, would recompile at every start)."""
import json
import subprocess
import sys

SCRIPT = """
import json
import numpy as np
from numba.core import event
from charrnn import CharRNN, ModelConfig, Sampler, Vocab

compiled = []

class Record(event.Listener):
    def on_start(self, ev):
        compiled.append(str(ev.data.get("dispatcher")))

    def on_end(self, ev):
        pass

vocab = Vocab("abc\\n")
x = np.zeros((3, 5), np.int64)
with event.install_listener("numba:compile", Record()):
    for cell in ("lstm", "gru"):
        model = CharRNN(ModelConfig(vocab_size=4, cell=cell, hidden_size=16, num_layers=2),
                        np.float32)
        model.loss_and_grad(x, x)
        Sampler(model, vocab).sample(5, seed=0)
print(json.dumps(compiled))
"""


def compiles():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_a_second_process_compiles_nothing():
    compiles()  # fills the cache with whatever earlier tests did not
    assert compiles() == []
