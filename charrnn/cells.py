"""The cells: what each one is, written once, and the registry that lists them.

A CellSpec says everything the rest of charrnn needs to know about a cell: its gates, the
state it carries, the buffers its kernels use, its parameters' initialisation, its torch.nn
counterpart and what it supports. Nothing outside the kernels tests a cell's name: it asks
the spec. The arithmetic lives in kernels/<name>.py and its GPU twin cuda/<name>.py, each
with the same two calls (see kernels.recurrence):

    step(gates, hg, h_prev, c_prev, h, c, w_hh, b_hh, hat, rstd, gain, variant)
    step_backward(gates, hg, dh, dh_prev, dc, h_prev, c_prev, c, hat, rstd, gain, dgain,
                  db_hh, variant)

(the GPU's step_backward takes no hat, rstd, gain or dgain: no layer norm there yet). A scan
cell (CellSpec.scan) has no W_hh; its modules define instead coefficients(gates, ab), which
turns its gates into the (a, b) of kernels.scan's linear recurrence, and
coefficients_backward(gates, ab); the time loops run the recurrence itself.
This module imports neither NumPy nor Numba: the CLI reads it to list the choices.
"""
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class CellSpec:
    name: str  # --cell's value, and the kernel modules' name (kernels/NAME.py, cuda/NAME.py)
    label: str  # as people write it: "GRU"
    gates: tuple  # the names of its G gate blocks, in torch.nn's order
    shown: tuple  # ((gate, what it does), ...): of `gates`, those in [0, 1] the inspect page
    # shows, each with the sentence that explains it there
    carries_c: bool  # its state is (h, c), each (L, B, H), as nn.LSTM's; else h alone
    h_side_apart: bool  # its h-side pre-activations are kept apart (hg), not summed in
    torch_module: Optional[str]  # the torch.nn module whose parameters these are (None: the
    # docs' own module for it, docs/guides/models.md)
    nonlinearities: tuple = ("tanh",)  # --nonlinearity's choices; each a kernel variant
    layer_norm: bool = False  # --layer-norm is built for it
    gate_bias: tuple = ()  # ((gate, value), ...): b_ih's gate block starts at value, b_hh's 0
    scan: bool = False  # no W_hh or b_hh: h_t = a_t h_(t-1) + b_t, a and b from the input
    # alone (kernels.scan); its h side (hg) holds (a, b)
    block: bool = False  # --block is built for it: each layer a residual block with a
    # feed-forward sublayer (charrnn.stack, kernels.block)
    onnx: Optional[tuple] = None  # (ONNX operator, its gate blocks as indices into `gates`,
    # ((attribute, value), ...)): each layer is that operator (charrnn.onnx_export); None:
    # basic operators

    @property
    def G(self):
        """Gate blocks per unit: the weight matrices are (G*H, in)."""
        return len(self.gates)

    def describe(self, nonlinearity="tanh"):
        """'GRU', or 'RNN (relu)' where the cell has a choice of nonlinearity."""
        return f"{self.label} ({nonlinearity})" if len(self.nonlinearities) > 1 else self.label


LSTM = CellSpec(
    name="lstm", label="LSTM", gates=("input gate", "forget gate", "cell candidate",
                                      "output gate"),
    shown=(("input gate", "The LSTM input gate i: how much of the new candidate the cell writes "
            "at this character (white 0, green 1)."),
           ("forget gate", "The LSTM forget gate f: how much of its old memory the cell keeps at "
            "this character (white 0, green 1)."),
           ("output gate", "The LSTM output gate o: how much of the cell's memory reaches the "
            "hidden state (white 0, green 1).")),
    carries_c=True, h_side_apart=False,
    torch_module="LSTM", gate_bias=((1, 1.0),),  # a forget-gate bias of 1: memories persist
    onnx=("LSTM", (0, 3, 1, 2), ()))  # ONNX's gates: i, o, f, c
GRU = CellSpec(
    name="gru", label="GRU", gates=("reset gate", "update gate", "candidate"),
    shown=(("reset gate", "The GRU reset gate r: how much of the previous state the candidate "
            "sees (white 0, green 1)."),
           ("update gate", "The GRU update gate z: how much of the previous state is kept "
            "rather than replaced (white 0, green 1).")),
    carries_c=False, h_side_apart=True,  # r scales W_hn h
    torch_module="GRU", layer_norm=True,
    onnx=("GRU", (1, 0, 2), (("linear_before_reset", 1),)))  # z, r, h; r scales W_hn h + b_hn
RNN = CellSpec(
    name="rnn", label="RNN", gates=("hidden",), shown=(), carries_c=False, h_side_apart=False,
    torch_module="RNN", nonlinearities=("tanh", "relu"), onnx=("RNN", (0,), ()))

MINGRU = CellSpec(
    name="mingru", label="minGRU", gates=("update gate", "candidate"),
    shown=(("update gate", "The minGRU update gate z, from the character alone: how much of "
            "the state the new candidate replaces (white 0, green 1)."),),
    carries_c=False, h_side_apart=False, torch_module=None, scan=True, block=True)
MINLSTM = CellSpec(
    name="minlstm", label="minLSTM", gates=("forget gate", "input gate", "candidate"),
    shown=(("forget gate", "The minLSTM forget gate f, from the character alone; the state "
            "keeps f / (f + i) of itself (white 0, green 1)."),
           ("input gate", "The minLSTM input gate i, from the character alone; the state "
            "takes i / (f + i) of the new candidate (white 0, green 1).")),
    carries_c=False, h_side_apart=False, torch_module=None, scan=True, block=True)

# The registry: --cell's choices, in this order.
REGISTRY = {spec.name: spec for spec in (LSTM, GRU, RNN, MINGRU, MINLSTM)}
NAMES = tuple(REGISTRY)

# Kernel ids: one per (cell, nonlinearity), passed to compiled code as a constant so that it
# compiles only its own cell's branch (kernels.recurrence).
KERNELS = tuple((spec, nl) for spec in REGISTRY.values() for nl in spec.nonlinearities)


def kernel_id(config):
    """The kernel id of a ModelConfig's cell and nonlinearity (see KERNELS)."""
    s = config.spec
    nl = config.nonlinearity if config.nonlinearity in s.nonlinearities else s.nonlinearities[0]
    return KERNELS.index((s, nl))
