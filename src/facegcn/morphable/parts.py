"""The parts that close the face: head and neck, mouth and eye sockets, gums and tongue, teeth,
eyeballs (ICT-FaceKit's whole-head model; the face area is the morphable model itself).

Vertex indexing
---------------
Part vertices come *after* the face's ``V`` vertices: closed-mesh vertex ``V + p`` is part vertex
``p``. Part triangles index that concatenated ``(V + P)`` array, so triangles across the face /
head seam (and the sockets' rims, which are face vertices) share the face's vertices and the
closed surface has no cracks. Vertex and triangle groups are indices into
:data:`PART_GROUPS`.

Parts atlas (``ModelParts.uv``, ``u`` right, ``v`` up, texture row 0 = top)
---------------------------------------------------------------------------
ICT's UDIM-like tiles (``u`` in ``[1, 2]`` head, neck and sockets; ``[2, 3]`` gums and tongue;
``[3, 4]`` teeth; ``[0, 1]`` for each eyeball's outer sclera shell *and* its inner iris shell,
overlapping each other and the face's tile) are packed into one square texture, each tile
shrunk by :data:`ATLAS_MARGIN` of its cell on every side (gutters)::

    v 1 +-----------------+-----------------+
        |  head, neck,    |  gums, tongue   |
        |  mouth + eye    |                 |
        |  sockets        |                 |
    0.5 +-----------------+--------+--------+
        |  teeth          | sclera | sclera |
        |                 |  left  |  right |
        |                 +--------+--------+
        |                 | iris   | iris   |
        |                 |  left  |  right |
      0 +-----------------+--------+--------+
        0                0.5      0.75      1  u

(:data:`ATLAS_CELLS`: ``(u0, v0, size)`` of each source tile's cell; :func:`atlas_tile` names
the tile of a group / eyeball part.)

Storage (``data/ict_parts.npz``, built by ``tools/vendor_ict.py``): neutral in cm (float32);
identity / expression deltas as int16 fixed point with step :data:`DELTA_STEP_CM` cm (2⁻¹¹ cm ≈
4.9 µm; absolute error ≤ half a step per delta, as float16 for deltas near 0.5 cm, and the
file compresses 2× better than float16).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import numpy as np

from facegcn.errors import ModelFileError

__all__ = [
    "ATLAS_CELLS",
    "ATLAS_MARGIN",
    "DELTA_STEP_CM",
    "EYEBALL_PARTS",
    "PART_GROUPS",
    "ModelParts",
    "atlas_tile",
    "atlas_uv",
    "load_parts",
    "vendored_parts_path",
]

#: the groups kept, in vertex order (ICT's own group order)
PART_GROUPS = ("head_and_neck", "mouth_socket", "eye_socket_left", "eye_socket_right", "gums_and_tongue", "teeth",
               "eyeball_left", "eyeball_right")
#: values of :attr:`ModelParts.eyeball_part`
EYEBALL_PARTS = ("none", "sclera", "iris")
#: source tile (the integer part of ICT's ``u``; eyeballs by group) → atlas cell ``(u0, v0, size)``
ATLAS_CELLS = {
    "head": (0.0, 0.5, 0.5),  # u in [1, 2]: head_and_neck, mouth_socket, eye sockets
    "gums_and_tongue": (0.5, 0.5, 0.5),  # u in [2, 3]
    "teeth": (0.0, 0.0, 0.5),  # u in [3, 4]
    "sclera_left": (0.5, 0.25, 0.25),  # u in [0, 1]
    "sclera_right": (0.75, 0.25, 0.25),  # u in [0, 1]
    "iris_left": (0.5, 0.0, 0.25),  # u in [0, 1]
    "iris_right": (0.75, 0.0, 0.25),  # u in [0, 1]
}
ATLAS_MARGIN = 0.01
DELTA_STEP_CM = 2.0**-11
_SOURCE_TILE_U0 = {"head": 1.0, "gums_and_tongue": 2.0, "teeth": 3.0, "sclera_left": 0.0, "sclera_right": 0.0,
                   "iris_left": 0.0, "iris_right": 0.0}


def atlas_tile(group: str, eyeball_part: int = 0) -> str:
    """The :data:`ATLAS_CELLS` key of a group's polygons (eyeballs: by :data:`EYEBALL_PARTS` index)."""
    if group.startswith("eyeball_"):
        return f"{EYEBALL_PARTS[eyeball_part]}_{group.split('_', 1)[1]}"
    return "teeth" if group == "teeth" else "gums_and_tongue" if group == "gums_and_tongue" else "head"


def atlas_uv(uv: np.ndarray, tile: str) -> np.ndarray:
    """ICT tile UVs → parts-atlas UVs.

    Args:
        uv: ICT texture coordinates of one tile (``u`` in ``[k, k + 1]``, ``v`` in ``[0, 1]``).
        tile: a key of :data:`ATLAS_CELLS`.

    Returns:
        the atlas coordinates, ``u, v`` in ``[0, 1]``.

    Shapes:
        uv: ``(T, 2)`` float → ``(T, 2)`` float32.
    """
    u0, v0, size = ATLAS_CELLS[tile]
    local = np.asarray(uv, np.float64) - [_SOURCE_TILE_U0[tile], 0.0]
    if local.size and (local.min() < -1e-6 or local.max() > 1 + 1e-6):
        raise ValueError(f"uv outside tile {tile!r}")
    local = ATLAS_MARGIN + (1.0 - 2.0 * ATLAS_MARGIN) * np.clip(local, 0.0, 1.0)
    return (np.asarray([u0, v0]) + size * local).astype(np.float32)


@dataclass(frozen=True, eq=False)
class ModelParts:
    """Geometry, groups and atlas of the parts (see the module docstring for the indexing).

    Attributes:
        n_face_vertices: ``V``, the face model's vertex count (part vertex ``p`` is closed vertex ``V + p``).
        group_names: the group names (:data:`PART_GROUPS`).
        vertex_group: ``(P,)`` int64, each part vertex's group (index into ``group_names``).
        eyeball_part: ``(P,)`` int64, 0 = not an eyeball, 1 = sclera (the outer shell, cornea
            included), 2 = iris (the inner shell with the iris disc).
        faces: ``(Fp, 3)`` int64 triangles into the closed ``(V + P)`` vertex array.
        face_group: ``(Fp,)`` int64 group of each triangle.
        uv: ``(Tp, 2)`` float32 parts-atlas coordinates; ``faces_uv``: ``(Fp, 3)`` int64 into ``uv``.
        neutral: ``(P, 3)`` float32 neutral positions, model units and frame.
        id_deltas: ``(n_id, P, 3)`` float32 identity deltas, model units.
        exp_deltas: ``(n_exp, P, 3)`` float32 expression deltas, model units.
    """

    n_face_vertices: int
    group_names: tuple[str, ...]
    vertex_group: np.ndarray
    eyeball_part: np.ndarray
    faces: np.ndarray
    face_group: np.ndarray
    uv: np.ndarray
    faces_uv: np.ndarray
    neutral: np.ndarray
    id_deltas: np.ndarray
    exp_deltas: np.ndarray

    @property
    def n_vertices(self) -> int:
        """P, the number of part vertices."""
        return int(self.neutral.shape[0])

    def group_index(self, name: str) -> int:
        if name not in self.group_names:
            raise KeyError(f"no part group {name!r} (has {self.group_names})")
        return self.group_names.index(name)

    def vertices_of(self, *names: str) -> np.ndarray:
        """``(n,)`` int64 part-vertex indices (0-based, add ``n_face_vertices`` for closed indices)
        of the named groups."""
        return np.flatnonzero(np.isin(self.vertex_group, [self.group_index(n) for n in names]))

    def faces_of(self, *names: str) -> np.ndarray:
        """``(n,)`` int64 indices into :attr:`faces` of the named groups' triangles."""
        return np.flatnonzero(np.isin(self.face_group, [self.group_index(n) for n in names]))

    def shape(self, id_coeff: np.ndarray, exp_coeff: np.ndarray | None = None) -> np.ndarray:
        """Part vertices for one coefficient vector (numpy; the model's torch version is
        :meth:`facegcn.morphable.MorphableModel.closed_shape`).

        Args:
            id_coeff: ``(n_id,)``; exp_coeff: ``(n_exp,)`` or None.

        Returns:
            ``(P, 3)`` float32, model units.
        """
        out = self.neutral + np.tensordot(np.asarray(id_coeff, np.float32), self.id_deltas, 1)
        if exp_coeff is not None:
            out = out + np.tensordot(np.asarray(exp_coeff, np.float32), self.exp_deltas, 1)
        return out.astype(np.float32)

    def shifted(self, offset: np.ndarray) -> "ModelParts":
        """The same parts with ``offset (3,)`` subtracted from the neutral (the model's recentring)."""
        return replace(self, neutral=(self.neutral - np.asarray(offset, np.float32)).astype(np.float32))


def vendored_parts_path() -> Path:
    return Path(str(resources.files("facegcn.morphable") / "data" / "ict_parts.npz"))


def load_parts(path: str | Path, n_face_vertices: int, n_id: int, n_exp: int, scale: float) -> ModelParts:
    """Read ``ict_parts.npz`` (see the module docstring).

    Args:
        path: the file.
        n_face_vertices, n_id, n_exp: the face model's sizes (checked against the file).
        scale: file centimetres → model units (0.1 for decimetres).

    Returns:
        the :class:`ModelParts` in model units (not yet recentred: see :meth:`ModelParts.shifted`).

    Raises:
        ModelFileError: unreadable or inconsistent file.
    """
    try:
        with np.load(path, allow_pickle=False) as d:
            names = tuple(str(x) for x in d["group_names"])
            step = float(d["delta_step_cm"])
            neutral = d["neutral_cm"].astype(np.float32) * np.float32(scale)
            idd = d["identity_deltas_q"].astype(np.float32) * np.float32(step * scale)
            exd = d["expression_deltas_q"].astype(np.float32) * np.float32(step * scale)
            arrays = {k: d[k].astype(np.int64) for k in ("vertex_group", "eyeball_part", "faces", "face_group",
                                                          "faces_uv")}
            uv = d["uv"].astype(np.float32)
            nf = int(d["n_face_vertices"])
    except (OSError, KeyError, ValueError, EOFError) as exc:
        raise ModelFileError(f"cannot read ICT parts {path}: {type(exc).__name__}: {exc}") from None
    P = len(neutral)
    ok = (nf == n_face_vertices and idd.shape == (n_id, P, 3) and exd.shape == (n_exp, P, 3)
          and arrays["vertex_group"].shape == (P,) and arrays["faces"].shape == arrays["faces_uv"].shape
          and arrays["faces"].min() >= 0 and arrays["faces"].max() < nf + P
          and arrays["faces_uv"].min() >= 0 and arrays["faces_uv"].max() < len(uv)
          and np.isfinite(neutral).all())
    if not ok:
        raise ModelFileError(f"ICT parts {path} do not match the face model ({n_face_vertices} vertices, "
                             f"{n_id} identity, {n_exp} expression components)")
    return ModelParts(n_face_vertices=nf, group_names=names, uv=uv, neutral=neutral, id_deltas=idd,
                      exp_deltas=exd, **arrays)
