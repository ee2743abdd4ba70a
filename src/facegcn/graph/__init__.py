"""facegcn.graph: mesh hierarchy, Chebyshev graph convolutions and the GCN texture networks.

- :func:`build_hierarchy` / :class:`MeshHierarchy` / :func:`hierarchy_report` — CoMA-style
  quadric down-sampling (fast_simplification), selection / barycentric matrices, scaled Laplacians,
  cached as ``.npz``;
- :class:`ChebConv` — batched ``(B, V, C)`` Chebyshev convolution (maths of torch_geometric's
  ``ChebConv``, sym-normalised, ``lambda_max = 2``);
- :class:`TextureDecoder`, :class:`TextureRefiner`, :class:`TextureMerger`,
  :class:`TextureGenerator`, :class:`ImageCritic` (+ :func:`gradient_penalty`);
- :func:`print_parameter_counts`.
"""

from facegcn.graph.cheb_conv import ChebConv, cheb_conv
from facegcn.graph.critic import ImageCritic, gradient_penalty
from facegcn.graph.decoder import TextureDecoder
from facegcn.graph.generator import TextureGenerator
from facegcn.graph.geometry import closest_points_on_mesh
from facegcn.graph.hierarchy import MeshHierarchy, build_hierarchy, hierarchy_report
from facegcn.graph.laplacian import adjacency, edge_index, mesh_edges, scaled_laplacian
from facegcn.graph.merger import TextureMerger
from facegcn.graph.operators import MeshOperators
from facegcn.graph.refiner import TextureRefiner
from facegcn.graph.resblock import ChebResBlock
from facegcn.graph.sparse import SparseMatrix, spmm
from facegcn.graph.summary import count_parameters, parameter_table, print_parameter_counts

__all__ = [
    "ChebConv",
    "ChebResBlock",
    "ImageCritic",
    "MeshHierarchy",
    "MeshOperators",
    "SparseMatrix",
    "TextureDecoder",
    "TextureGenerator",
    "TextureMerger",
    "TextureRefiner",
    "adjacency",
    "build_hierarchy",
    "cheb_conv",
    "closest_points_on_mesh",
    "count_parameters",
    "edge_index",
    "gradient_penalty",
    "hierarchy_report",
    "mesh_edges",
    "parameter_table",
    "print_parameter_counts",
    "scaled_laplacian",
    "spmm",
]
