"""Texture refiner: per-vertex inputs -> refined colour (the authors' ``mesh_refiner``, ResNet model).

Input: 7 channels per vertex — 3DMM albedo RGB, photo colour sampled at the projected vertex (RGB)
and visibility. Layout (widths from the authors' code, ``F = [16, 32, 32, 16]`` then 3)::

    res16 (level 0) -> down -> res32 (level 1) -> res32 (level 1) -> up -> res16 (level 0) -> res3
"""

from __future__ import annotations

import torch
from torch import nn

from facegcn.errors import ConfigError
from facegcn.graph.operators import as_operators
from facegcn.graph.resblock import ChebResBlock

__all__ = ["TextureRefiner"]


class TextureRefiner(nn.Module):
    def __init__(self, graph, in_channels: int = 7, widths=(16, 32, 32, 16, 3), K: int = 6,
                 act: str = "elu"):
        super().__init__()
        self.ops = as_operators(graph)
        widths = tuple(int(w) for w in widths)
        if len(widths) != 5:
            raise ConfigError(f"the refiner takes 5 widths (res, down, res, res, up, res, res), got {len(widths)}")
        if self.ops.num_levels < 2:
            raise ConfigError("the refiner needs a hierarchy with at least 2 levels")
        self.in_channels = int(in_channels)
        self.widths = widths
        c = [self.in_channels, *widths]
        self.blocks = nn.ModuleList(ChebResBlock(c[i], c[i + 1], K, act) for i in range(5))

    @property
    def out_channels(self) -> int:
        return self.widths[-1]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, V_0, in_channels) -> (B, V_0, widths[-1])."""
        if x.dim() != 3 or x.shape[2] != self.in_channels:
            raise ValueError(f"expected (B, V, {self.in_channels}) inputs, got {tuple(x.shape)}")
        L0, L1 = self.ops.laplacians[0], self.ops.laplacians[1]
        b = self.blocks
        h = b[0](x, L0)
        h = self.ops.downsample(h, 0)
        h = b[1](h, L1)
        h = b[2](h, L1)
        h = self.ops.upsample(h, 0)
        h = b[3](h, L0)
        return b[4](h, L0)
