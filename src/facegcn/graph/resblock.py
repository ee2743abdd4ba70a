"""Residual block of two Chebyshev convolutions with a shortcut (the authors' ``cheb_res_block``)::

    h   = act(cheb_K(x) + b1)
    out = act(cheb_K(h) + b2 + shortcut(x))      shortcut = identity, or a K=1 (linear) projection
                                                 without bias when the widths differ

Initialisation: the authors' He-normal everywhere, except that ``conv2`` starts at zero
(``zero_init=True``, the "zero-init residual" trick of Goyal et al. 2017), so every block starts as
``act(shortcut(x) + b2)``. Measured reason (ICT face, decoder overfitting a fixed colour field,
Adam 3e-3 cosine, 1000 steps): 37.9 dB with it versus 25.1 dB with He-normal ``conv2``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from facegcn.graph.cheb_conv import ChebConv
from facegcn.graph.sparse import SparseMatrix

__all__ = ["ChebResBlock", "activation"]

_ACTIVATIONS = {
    "elu": F.elu,
    "relu": F.relu,
    "leaky_relu": lambda x: F.leaky_relu(x, 0.2),
    "tanh": torch.tanh,
    "none": lambda x: x,
}


def activation(name: str | None):
    """The activation function called ``name`` (``elu`` — the authors' choice — ``relu``,
    ``leaky_relu`` (slope 0.2), ``tanh`` or ``none``)."""
    key = "none" if name is None else str(name).lower()
    if key not in _ACTIVATIONS:
        from facegcn.errors import ConfigError

        raise ConfigError(f"unknown activation {name!r} (choose from {', '.join(sorted(_ACTIVATIONS))})")
    return _ACTIVATIONS[key]


class ChebResBlock(nn.Module):
    """``(B, V, C_in) -> (B, V, C_out)`` on one mesh level (see module docstring)."""

    def __init__(self, in_channels: int, out_channels: int, K: int = 6, act: str | None = "elu",
                 final_act: bool = True, zero_init: bool = True):
        super().__init__()
        self.conv1 = ChebConv(in_channels, out_channels, K)
        self.conv2 = ChebConv(out_channels, out_channels, K)
        self.shortcut = None if in_channels == out_channels else ChebConv(in_channels, out_channels, 1, bias=False)
        self.act_name = "none" if act is None else str(act)
        self._act = activation(act)
        self.final_act = bool(final_act)
        self.zero_init = bool(zero_init)
        if self.zero_init:
            nn.init.zeros_(self.conv2.weight)

    def reset_parameters(self) -> None:
        for conv in (self.conv1, self.conv2, self.shortcut):
            if conv is not None:
                conv.reset_parameters()
        if self.zero_init:
            nn.init.zeros_(self.conv2.weight)

    def forward(self, x: torch.Tensor, laplacian: SparseMatrix) -> torch.Tensor:
        h = self._act(self.conv1(x, laplacian))
        h = self.conv2(h, laplacian)
        h = h + (x if self.shortcut is None else self.shortcut(x, laplacian))
        return self._act(h) if self.final_act else h

    def extra_repr(self) -> str:
        return f"act={self.act_name}, final_act={self.final_act}"
