"""facegcn: high-fidelity 3D face reconstruction from a single photo (Lin et al., CVPR 2020).

Data flows one way: image → frontend → coarse coefficients → mesh → GCN texture → files.
"""

from facegcn.errors import FaceGCNError

__version__ = "0.1.0"
__all__ = ["FaceGCNError", "__version__"]
