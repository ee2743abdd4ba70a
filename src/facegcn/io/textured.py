"""The exported mesh as one value: shared vertices and UVs, one material per part.

A :class:`TexturedMesh` is what the pipeline exports and what the writers (OBJ/MTL/PNG, GLB,
PLY) and the fidelity evaluation consume, so every file format and every metric sees the same
geometry and textures.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Material", "TexturedMesh"]


@dataclass(frozen=True, eq=False)
class Material:
    """One material: the triangles it covers and how they are coloured.

    Attributes:
        name: material name (``face``, ``parts``...), unique within the mesh; also the suffix of
            its texture file (``mesh.png`` for the first material, ``mesh_<name>.png`` after).
        faces: ``(F_m, 3)`` int64 vertex indices of its triangles.
        faces_uv: ``(F_m, 3)`` int64 indices into ``TexturedMesh.uv``, or None (vertex colours).
        texture: ``(H, W, 3)`` uint8 image (row 0 = top, ``v`` = 1), or None.
    """

    name: str
    faces: np.ndarray
    faces_uv: np.ndarray | None = None
    texture: np.ndarray | None = None

    @property
    def textured(self) -> bool:
        return self.faces_uv is not None and self.texture is not None


@dataclass(frozen=True, eq=False)
class TexturedMesh:
    """A mesh ready to write or render.

    Attributes:
        vertices: ``(V, 3)`` float32, metres.
        normals: ``(V, 3)`` float32 unit vertex normals.
        vertex_colors: ``(V, 3)`` float32 in [0, 1] (used by PLY and by untextured materials).
        uv: ``(T, 2)`` float32 texture coordinates in [0, 1] (``v`` = 0 at the bottom row), or None.
        materials: the parts, in drawing order; the first is the face.
    """

    vertices: np.ndarray
    normals: np.ndarray
    vertex_colors: np.ndarray
    uv: np.ndarray | None
    materials: tuple[Material, ...] = field(default_factory=tuple)

    @property
    def faces(self) -> np.ndarray:
        """``(F, 3)`` every material's triangles, concatenated in material order."""
        return np.concatenate([m.faces for m in self.materials], 0)
