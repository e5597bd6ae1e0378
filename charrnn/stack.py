"""The layer stack, stated once: input, recurrent layers, dropout between, decoder.

    ids (B,) -> one-hot, or encoder.weight's rows (E) -> layer 0 -> dropout -> layer 1 -> ...
             -> dropout -> decoder (V logits)

Every engine walks the same stack: the training pass (charrnn.model and its GPU twin), the
compiled sampling loop and beam search (kernels.sampling, cuda.sampling), and step. Each reads
where a layer's weights are and what it takes in from here, never from names of its own.
Dimension letters: L layers, H hidden, G gates, V vocabulary, E embedding.
"""
from dataclasses import dataclass
from typing import Optional

ENCODER, DECODER_WEIGHT, DECODER_BIAS = "encoder.weight", "decoder.weight", "decoder.bias"


@dataclass(frozen=True)
class Layer:
    """One recurrent layer: its parameters' names (torch.nn's), in the order the compiled
    sampler takes their offsets (WEIGHTS), and its input."""

    index: int
    n_in: int  # input width: V (one-hot), E (embedding) or H (the layer below)
    one_hot: bool  # reads ids: its x side is a row of a (V, G*H) table per character
    w_ih: str  # (G*H, n_in)
    w_hh: Optional[str]  # (G*H, H), or None for a scan cell (CellSpec.scan)
    b_ih: str  # (G*H,)
    b_hh: Optional[str]  # (G*H,), or None likewise
    norm_ih: Optional[str]  # layer norm's gain - 1 on each side (G*H,), or None
    norm_hh: Optional[str]

    @property
    def weights(self):
        """The names in WEIGHTS' order (None where the model has none)."""
        return tuple(getattr(self, w) for w in WEIGHTS)


WEIGHTS = ("w_ih", "w_hh", "b_ih", "b_hh", "norm_ih", "norm_hh")


def layers(config):
    """The stack's L layers, bottom first."""
    found, h_side = [], not config.spec.scan
    for k in range(config.num_layers):
        norms = (f"rnn.norm_ih_l{k}", f"rnn.norm_hh_l{k}") if config.layer_norm else (None, None)
        found.append(Layer(k, config.input_size if k == 0 else config.hidden_size,
                           k == 0 and not config.embed_dim, f"rnn.weight_ih_l{k}",
                           f"rnn.weight_hh_l{k}" if h_side else None, f"rnn.bias_ih_l{k}",
                           f"rnn.bias_hh_l{k}" if h_side else None, *norms))
    return found


def parameter_shapes(config):
    """[(name, shape)] of every parameter, in the flat buffer's order: the encoder (with an
    embedding), each layer's, the decoder's."""
    G, H, V, E = config.gates, config.hidden_size, config.vocab_size, config.embed_dim
    shapes = [(ENCODER, (V, E))] if E else []
    for layer in layers(config):
        shapes += [(name, shape) for name, shape in (
            (layer.w_ih, (G * H, layer.n_in)), (layer.w_hh, (G * H, H)), (layer.b_ih, (G * H,)),
            (layer.b_hh, (G * H,)), (layer.norm_ih, (G * H,)), (layer.norm_hh, (G * H,)))
            if name]
    return shapes + [(DECODER_WEIGHT, (V, H)), (DECODER_BIAS, (V,))]


def matrices(config):
    """The names of the weight matrices the products use, as (name, recurrent): each layer's
    W_hh (a product per step), the W_ih of layers that read a dense input, the decoder's."""
    found = [(layer.w_hh, True) for layer in layers(config) if layer.w_hh]
    found += [(layer.w_ih, False) for layer in layers(config) if not layer.one_hot]
    return found + [(DECODER_WEIGHT, False)]
