"""The layer stack, stated once: input, recurrent layers, dropout between, decoder.

    ids (B,) -> one-hot, or encoder.weight's rows (E) -> layer 0 -> dropout -> layer 1 -> ...
             -> dropout -> decoder (V logits)

With --block (minGRU and minLSTM: CellSpec.block) each layer is a residual block, as in the
language models of Feng et al. (2024) and of Mamba and the pre-norm Transformer: the cell reads
its input normalised and adds its output to it, then a feed-forward sublayer does the same,
and the top is normalised before the decoder (kernels.block; rms is RMS norm):

    y = x + cell(rms(x))                 (layer 0: y = cell(x), x one-hot or embedded)
    out = y + W2 gelu(W1 rms(y) + b1) + b2          W1 (F, H), W2 (H, F), F = FF * H

Every engine walks the same stack: the training pass (charrnn.model and its GPU twin), the
compiled sampling loop and beam search (kernels.sampling, cuda.sampling), and step. Each reads
where a layer's weights are and what it takes in from here, never from names of its own.
Dimension letters: L layers, H hidden, G gates, V vocabulary, E embedding, F feed-forward.
"""
from dataclasses import dataclass
from typing import Optional

ENCODER, DECODER_WEIGHT, DECODER_BIAS = "encoder.weight", "decoder.weight", "decoder.bias"
OUT_NORM = "rnn.out_norm"  # the block's norm of the top, before the decoder: gain - 1 (H,)
FF = 4  # the block's feed-forward width, in multiples of H (the Transformer's)


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
    # the block's (--block; else None): rms norms' gain - 1 (H,) of the cell's input (not in
    # layer 0, whose input is no residual stream) and of the feed-forward's; its weights
    norm_in: Optional[str] = None
    ff_norm: Optional[str] = None
    ff_w1: Optional[str] = None  # (F, H)
    ff_b1: Optional[str] = None  # (F,)
    ff_w2: Optional[str] = None  # (H, F)
    ff_b2: Optional[str] = None  # (H,)

    @property
    def weights(self):
        """The names in WEIGHTS' order (None where the model has none)."""
        return tuple(getattr(self, w) for w in WEIGHTS)


WEIGHTS = ("w_ih", "w_hh", "b_ih", "b_hh", "norm_ih", "norm_hh", "norm_in", "ff_norm", "ff_w1",
           "ff_b1", "ff_w2", "ff_b2")


def layers(config):
    """The stack's L layers, bottom first."""
    found, h_side = [], not config.spec.scan
    for k in range(config.num_layers):
        norms = (f"rnn.norm_ih_l{k}", f"rnn.norm_hh_l{k}") if config.layer_norm else (None, None)
        block = {} if not config.block else dict(
            norm_in=f"rnn.norm_l{k}" if k else None, ff_norm=f"rnn.ff_norm_l{k}",
            ff_w1=f"rnn.ff_weight1_l{k}", ff_b1=f"rnn.ff_bias1_l{k}",
            ff_w2=f"rnn.ff_weight2_l{k}", ff_b2=f"rnn.ff_bias2_l{k}")
        found.append(Layer(k, config.input_size if k == 0 else config.hidden_size,
                           k == 0 and not config.embed_dim, f"rnn.weight_ih_l{k}",
                           f"rnn.weight_hh_l{k}" if h_side else None, f"rnn.bias_ih_l{k}",
                           f"rnn.bias_hh_l{k}" if h_side else None, *norms, **block))
    return found


def gains(config):
    """The names of the norms' gains (stored as gain - 1; initialised to 0)."""
    found = [name for layer in layers(config)
             for name in (layer.norm_ih, layer.norm_hh, layer.norm_in, layer.ff_norm) if name]
    return found + ([OUT_NORM] if config.block else [])


def parameter_shapes(config):
    """[(name, shape)] of every parameter, in the flat buffer's order: the encoder (with an
    embedding), each layer's, the block's top norm, the decoder's."""
    G, H, V, E = config.gates, config.hidden_size, config.vocab_size, config.embed_dim
    F = FF * H
    shapes = [(ENCODER, (V, E))] if E else []
    for layer in layers(config):
        shapes += [(name, shape) for name, shape in (
            (layer.w_ih, (G * H, layer.n_in)), (layer.w_hh, (G * H, H)), (layer.b_ih, (G * H,)),
            (layer.b_hh, (G * H,)), (layer.norm_ih, (G * H,)), (layer.norm_hh, (G * H,)),
            (layer.norm_in, (H,)), (layer.ff_norm, (H,)), (layer.ff_w1, (F, H)),
            (layer.ff_b1, (F,)), (layer.ff_w2, (H, F)), (layer.ff_b2, (H,))) if name]
    shapes += [(OUT_NORM, (H,))] if config.block else []
    return shapes + [(DECODER_WEIGHT, (V, H)), (DECODER_BIAS, (V,))]


def matrices(config):
    """The names of the weight matrices the products use, as (name, recurrent): each layer's
    W_hh (a product per step), the W_ih of layers that read a dense input, the block's
    feed-forward weights, the decoder's."""
    found = [(layer.w_hh, True) for layer in layers(config) if layer.w_hh]
    found += [(layer.w_ih, False) for layer in layers(config) if not layer.one_hot]
    found += [(w, False) for layer in layers(config) for w in (layer.ff_w1, layer.ff_w2) if w]
    return found + [(DECODER_WEIGHT, False)]
