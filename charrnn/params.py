"""One flat parameter buffer with named views, in torch.nn.{LSTM,GRU,RNN} names and layouts.

Parameters, gradients and every optimizer moment share this layout, so the optimizer,
clipping, zeroing and checkpointing each touch one array.
"""
import numpy as np

from .stack import ENCODER, FF, gains, layers, parameter_shapes

ALIGN = 16  # elements: each view starts on a 64-byte boundary in float32


class ParamLayout:
    """Where each named parameter lives in the flat buffer."""

    def __init__(self, config):
        self.shapes = dict(parameter_shapes(config))
        self.offsets = {}
        offset = 0
        for name, shape in self.shapes.items():
            self.offsets[name] = offset
            offset += -(-int(np.prod(shape)) // ALIGN) * ALIGN
        self.size = offset

    @property
    def count(self):
        """Number of parameters (excluding alignment padding)."""
        return sum(int(np.prod(s)) for s in self.shapes.values())

    def views(self, flat):
        """{name: view into flat} with each parameter's shape."""
        assert flat.shape == (self.size,)
        return {name: flat[self.offsets[name]: self.offsets[name] + int(np.prod(shape))]
                .reshape(shape) for name, shape in self.shapes.items()}


def init_params(config, params, rng):
    """PyTorch's defaults (uniform +-1/sqrt(H) for recurrent and decoder weights, and as
    nn.Linear's, +-1/sqrt(F), for the block's W2 and b2; N(0, 1) embedding, norms' gains 1),
    then the cell's own gate biases (CellSpec.gate_bias: the LSTM's forget gate starts at 1, so
    memories persist early in training)."""
    H = config.hidden_size
    unit = set(gains(config))
    wide = {name for layer in layers(config) for name in (layer.ff_w2, layer.ff_b2) if name}
    for name, p in params.items():
        if name == ENCODER:
            p[...] = rng.standard_normal(p.shape)
        elif name in unit:
            p[...] = 0.0  # gain 1
        else:
            bound = 1.0 / np.sqrt(FF * H if name in wide else H)
            p[...] = rng.uniform(-bound, bound, p.shape)
    for gate, value in config.spec.gate_bias:
        for layer in layers(config):
            params[layer.b_ih][gate * H:(gate + 1) * H] = value
            params[layer.b_hh][gate * H:(gate + 1) * H] = 0.0
