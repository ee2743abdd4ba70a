"""Merger: concatenated decoder and refiner colours (6 channels) -> Chebyshev conv -> 3 -> tanh.

As in the authors' ``mesh_concat`` the convolution has K = 6 and no bias (``bias=True`` available);
the output is a colour in (-1, 1).
"""

from __future__ import annotations

import torch
from torch import nn

from facegcn.graph.cheb_conv import ChebConv
from facegcn.graph.operators import as_operators

__all__ = ["TextureMerger"]


class TextureMerger(nn.Module):
    def __init__(self, graph, in_channels: int = 6, out_channels: int = 3, K: int = 6, bias: bool = False):
        super().__init__()
        self.ops = as_operators(graph)
        self.in_channels = int(in_channels)
        self.conv = ChebConv(in_channels, out_channels, K, bias=bias)

    def forward(self, *parts: torch.Tensor) -> torch.Tensor:
        """``merger(decoded, refined)`` (concatenated on channels) or ``merger(x)`` -> (B, V_0, 3)."""
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)
        if x.shape[-1] != self.in_channels:
            raise ValueError(f"the merger expects {self.in_channels} channels in all, got {x.shape[-1]}")
        return torch.tanh(self.conv(x, self.ops.laplacians[0]))
