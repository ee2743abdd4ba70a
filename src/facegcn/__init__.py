"""facegcn: high-fidelity 3D face reconstruction from a single photo (Lin et al., CVPR 2020).

Data flows one way: image → front-end → coarse coefficients → mesh → GCN texture → files.

Public API::

    from facegcn import Reconstructor, Config

    rec = Reconstructor(Config.preset("fast"))     # loads the models once; reuse it
    faces = rec("photo.jpg")                       # list[Reconstruction], best face first
    faces[0].save("out/")                          # mesh.obj/.glb/.ply, coeffs.json, report.json, ...
    print(faces[0].metrics["landmark_nme"])

* :class:`Reconstructor` — the pipeline (``__call__(photo)``, ``observe``, ``reconstruct(obs, photo)``).
* :class:`Reconstruction` — one face: coefficients, mesh state, refined albedo, metrics, ``save()``.
* :class:`Config` — the typed configuration tree (``Config.preset("fast")``, ``Config.load(path)``).
* :func:`load_image` — a photo file → :class:`Photo` (EXIF-rotated RGB, size limits checked).
* :class:`FaceGCNError` — the base of every error a user can cause (one-line messages).

The names load on first use (``import facegcn`` stays light, so ``facegcn --help`` starts fast).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from facegcn.errors import FaceGCNError

__version__ = "0.1.0"
__all__ = ["Reconstructor", "Reconstruction", "Config", "Photo", "load_image", "FaceGCNError", "__version__"]

_LAZY = {
    "Reconstructor": "facegcn.pipeline",
    "Reconstruction": "facegcn.pipeline",
    "Config": "facegcn.config",
    "Photo": "facegcn.io.image",
    "load_image": "facegcn.io.image",
}

if TYPE_CHECKING:
    from facegcn.config import Config
    from facegcn.io.image import Photo, load_image
    from facegcn.pipeline import Reconstruction, Reconstructor


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'facegcn' has no attribute {name!r}")
