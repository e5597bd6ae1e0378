"""One flat parameter buffer with named views, in torch.nn.{LSTM,GRU,RNN} names and layouts.

Parameters, gradients and every optimizer moment share this layout, so the optimizer,
clipping, zeroing and checkpointing each touch one array.
"""
import numpy as np

ALIGN = 16  # elements: each view starts on a 64-byte boundary in float32


def parameter_shapes(config):
    """[(name, shape)] in a fixed order. G gates, H hidden, V vocabulary, E embedding."""
    G, H, V, E = config.gates, config.hidden_size, config.vocab_size, config.embed_dim
    shapes = []
    if E:
        shapes.append(("encoder.weight", (V, E)))
    for k in range(config.num_layers):
        n_in = config.input_size if k == 0 else H
        shapes += [
            (f"rnn.weight_ih_l{k}", (G * H, n_in)),
            (f"rnn.weight_hh_l{k}", (G * H, H)),
            (f"rnn.bias_ih_l{k}", (G * H,)),
            (f"rnn.bias_hh_l{k}", (G * H,)),
        ]
        if config.layer_norm:  # each gain - 1 (kernels.norm): decay pulls it towards 1
            shapes += [(f"rnn.norm_ih_l{k}", (G * H,)), (f"rnn.norm_hh_l{k}", (G * H,))]
    shapes += [("decoder.weight", (V, H)), ("decoder.bias", (V,))]
    return shapes


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
    """PyTorch's defaults (uniform +-1/sqrt(H) for recurrent and decoder weights, N(0, 1)
    embedding, layer-norm gains 1), plus an LSTM forget-gate bias of 1 so memories persist
    early in training."""
    H = config.hidden_size
    bound = 1.0 / np.sqrt(H)
    for name, p in params.items():
        if name == "encoder.weight":
            p[...] = rng.standard_normal(p.shape)
        elif name.startswith("rnn.norm"):
            p[...] = 0.0  # gain 1
        else:
            p[...] = rng.uniform(-bound, bound, p.shape)
    if config.cell == "lstm":
        for k in range(config.num_layers):
            params[f"rnn.bias_ih_l{k}"][H:2 * H] = 1.0
            params[f"rnn.bias_hh_l{k}"][H:2 * H] = 0.0
