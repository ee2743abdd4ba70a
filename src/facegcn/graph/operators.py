"""Torch side of a :class:`~facegcn.graph.hierarchy.MeshHierarchy`: every level's scaled Laplacian
and the down/up-sampling matrices as :class:`~facegcn.graph.sparse.SparseMatrix` modules.

One ``MeshOperators`` is shared by the decoder, refiner and merger of a generator, so ``.to(device)``
moves each matrix once and the networks hold no duplicate copies.
"""

from __future__ import annotations

import torch
from torch import nn

from facegcn.graph.sparse import SparseMatrix

__all__ = ["MeshOperators", "as_operators"]


class MeshOperators(nn.Module):
    """``laplacians[l]`` (V_l, V_l), ``down[l]`` (V_{l+1}, V_l) and ``up[l]`` (V_l, V_{l+1})."""

    def __init__(self, laplacians, down, up, digest: str = ""):
        super().__init__()
        self.laplacians = nn.ModuleList(SparseMatrix(m, symmetric=True) for m in laplacians)
        self.down = nn.ModuleList(SparseMatrix(m, symmetric=False) for m in down)
        self.up = nn.ModuleList(SparseMatrix(m, symmetric=False) for m in up)
        self.digest = digest
        if len(self.down) != len(self.laplacians) - 1 or len(self.up) != len(self.down):
            raise ValueError("MeshOperators needs L+1 Laplacians and L down/up matrices")

    @classmethod
    def from_hierarchy(cls, h) -> "MeshOperators":
        return cls(h.laplacians, h.down, h.up, digest=h.digest)

    @property
    def num_levels(self) -> int:
        return len(self.laplacians)

    @property
    def sizes(self) -> tuple[int, ...]:
        return tuple(m.shape[0] for m in self.laplacians)

    def downsample(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """Level ``level`` -> ``level + 1`` (keeps the selected vertices)."""
        return self.down[level](x)

    def upsample(self, x: torch.Tensor, level: int) -> torch.Tensor:
        """Level ``level + 1`` -> ``level`` (barycentric interpolation)."""
        return self.up[level](x)

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, digest={self.digest!r}"


def as_operators(graph) -> MeshOperators:
    """Accept a :class:`MeshOperators` (shared as is) or a ``MeshHierarchy`` (converted)."""
    if isinstance(graph, MeshOperators):
        return graph
    if hasattr(graph, "laplacians") and hasattr(graph, "kept"):
        return MeshOperators.from_hierarchy(graph)
    raise TypeError(f"expected a MeshHierarchy or MeshOperators, got {type(graph).__name__}")
