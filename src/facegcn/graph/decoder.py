"""Texture decoder: identity feature -> per-vertex colour (the authors' ``mesh_decoder``, ResNet model).

    z (B, 128) -> FC + ReLU -> (B, V_L, 32) on the coarsest level
               -> L x [barycentric up-sampling + ChebResBlock] with widths 16, 16, 16, 3
               -> (B, V_0, 3)

Defaults follow the authors' code (``F = [32, 16, 16, 16]`` then 3 output channels, K = 6, ELU,
final ELU after the last block; the merger adds tanh). The input is the 128-d dlib face descriptor.
"""

from __future__ import annotations


import torch
from torch import nn

from facegcn.errors import ConfigError
from facegcn.graph.operators import as_operators
from facegcn.graph.resblock import ChebResBlock

__all__ = ["TextureDecoder"]


class TextureDecoder(nn.Module):
    def __init__(self, graph, in_features: int = 128, fc_channels: int = 32,
                 widths=(16, 16, 16, 3), K: int = 6, act: str = "elu"):
        super().__init__()
        self.ops = as_operators(graph)
        steps = self.ops.num_levels - 1
        widths = tuple(int(w) for w in widths)
        if len(widths) != steps:
            raise ConfigError(f"the decoder needs one width per up-sampling step ({steps}), got {len(widths)}")
        self.in_features = int(in_features)
        self.fc_channels = int(fc_channels)
        self.widths = widths
        self.coarse_vertices = self.ops.sizes[-1]
        self.fc = nn.Linear(self.in_features, self.coarse_vertices * self.fc_channels)
        nn.init.kaiming_normal_(self.fc.weight, nonlinearity="relu")  # authors: he_normal
        nn.init.zeros_(self.fc.bias)
        blocks = []
        c = self.fc_channels
        for w in widths:
            blocks.append(ChebResBlock(c, w, K, act))
            c = w
        self.blocks = nn.ModuleList(blocks)

    @property
    def out_channels(self) -> int:
        return self.widths[-1]

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """``z`` (B, in_features) -> (B, V_0, widths[-1])."""
        if z.dim() != 2 or z.shape[1] != self.in_features:
            raise ValueError(f"expected (B, {self.in_features}) identity features, got {tuple(z.shape)}")
        x = torch.relu(self.fc(z)).view(z.shape[0], self.coarse_vertices, self.fc_channels)
        top = self.ops.num_levels - 1
        for i, block in enumerate(self.blocks):
            level = top - 1 - i
            x = self.ops.upsample(x, level)
            x = block(x, self.ops.laplacians[level])
        return x
