"""The whole GCN texture generator (the authors' ``mesh_generator``): decoder + refiner + merger.

``TextureGenerator(hierarchy)(identity, refiner_input)`` -> colour (B, V, 3) in (-1, 1). The three
networks share one :class:`MeshOperators`. Widths and K are the defaults of each network.
"""

from __future__ import annotations

import torch
from torch import nn

from facegcn.graph.decoder import TextureDecoder
from facegcn.graph.merger import TextureMerger
from facegcn.graph.operators import as_operators
from facegcn.graph.refiner import TextureRefiner

__all__ = ["TextureGenerator"]


class TextureGenerator(nn.Module):
    def __init__(self, graph, identity_features: int = 128, refiner_channels: int = 7, K: int = 6,
                 act: str = "elu", decoder: dict | None = None, refiner: dict | None = None,
                 merger: dict | None = None):
        super().__init__()
        self.ops = as_operators(graph)
        self.decoder = TextureDecoder(self.ops, in_features=identity_features, K=K, act=act, **(decoder or {}))
        self.refiner = TextureRefiner(self.ops, in_channels=refiner_channels, K=K, act=act, **(refiner or {}))
        self.merger = TextureMerger(self.ops, in_channels=self.decoder.out_channels + self.refiner.out_channels,
                                    K=K, **(merger or {}))

    def forward(self, identity: torch.Tensor, refiner_input: torch.Tensor, return_parts: bool = False):
        """``identity`` (B, 128), ``refiner_input`` (B, V, 7) -> (B, V, 3) in (-1, 1)
        (with ``return_parts`` also the decoder and refiner outputs)."""
        dec = self.decoder(identity)
        ref = self.refiner(refiner_input)
        out = self.merger(dec, ref)
        return (out, dec, ref) if return_parts else out
