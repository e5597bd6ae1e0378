"""What the serve tests share: a small run to serve, and a server on 127.0.0.1 at a free port,
in a thread of the test's process, stopped by the test."""
import contextlib
import threading
import time

import numpy as np

from charrnn import CharRNN, ModelConfig, Vocab
from charrnn.checkpoint import save_model
from charrnn.config import ServeConfig
from charrnn.kernels import packed

VOCAB = Vocab("\n abcdefghijklmnopqrstuvwxyz.,")


def make_run(directory, hidden=packed.NR, cell="gru", seed=1):
    """A run directory holding a small float32 model with sharp predictions (a row that drew
    differently would soon show it); hidden a multiple of the packed kernel's panel."""
    model = CharRNN(ModelConfig(vocab_size=len(VOCAB), hidden_size=hidden, num_layers=2,
                                cell=cell), dtype=np.float32, seed=seed)
    model.flat *= 3.0
    directory.mkdir(parents=True, exist_ok=True)
    save_model(directory / "best.ckpt", model, VOCAB)
    return directory


@contextlib.contextmanager
def serving(runs, api_key=None, **limits):
    """(base URL, app) of a server for runs, ServeConfig limits as given; stopped on exit,
    its engines closed."""
    import uvicorn

    from charrnn.serve import create_app

    app = create_app([str(r) for r in runs], ServeConfig(**limits), api_key)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not server.started:
            assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
            time.sleep(0.02)
        port = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://127.0.0.1:{port}", app
    finally:
        server.should_exit = True
        thread.join(10)
        server.force_exit = True  # a connection a failed test left open
        thread.join(10)
        app.state.service.close()  # a no-op when the lifespan closed it


def wait_until(test, limit=10.0):
    deadline = time.monotonic() + limit
    while not test():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)
