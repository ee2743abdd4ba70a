"""Lambertian shading under 2nd-order spherical-harmonics lighting (Deep3DFaceRecon convention).

Coefficients ``sh (B, 27)`` = 9 coefficients for R, then 9 for G, then 9 for B (Deep3DFaceRecon's
``gamma.reshape(B, 3, 9)``). Shaded colour = ``albedo * sum_i Y_i(n) * (sh[c, i] + init[c, i])``
with the basis (real SH, Condon–Shortley signs, ``n = (x, y, z)`` unit normal in the world
frame, i.e. after the rigid rotation; +z points to the camera)::

    Y0 =  a0 c0                       Y4 =  a2 c2 x y
    Y1 = -a1 c1 y                     Y5 = -a2 c2 y z
    Y2 =  a1 c1 z                     Y6 =  a2 c2 / (2 sqrt 3) (3 z^2 - 1)
    Y3 = -a1 c1 x                     Y7 = -a2 c2 x z
                                      Y8 =  a2 c2 / 2 (x^2 - y^2)

    a0 = pi, a1 = 2 pi / sqrt 3, a2 = 2 pi / sqrt 8
    c0 = 1 / sqrt(4 pi), c1 = sqrt 3 / sqrt(4 pi), c2 = 3 sqrt 5 / sqrt(12 pi)

``c_l`` make the ``Y`` (without ``a_l``) the orthonormal real SH. The ``a_l`` are Deep3DFaceRecon's
constants; they are *not* the Lambertian kernel's ``Â_l = (pi, 2 pi / 3, pi / 4)`` for ``l >= 1``.
Hence for a distant radiance field with real-SH coefficients ``L_lm`` the exact irradiance is
reproduced by ``sh_lm = (Â_l / a_l) L_lm`` (so ``sh_00 = L_00``: for constant radiance ``L`` the
shading is ``pi * L * albedo``; the first-order coefficients are scaled by ``1 / sqrt 3`` and the
second-order ones by ``1 / (2 sqrt 2)``). Keeping Deep3DFaceRecon's constants means BFM/Deep3D
coefficients shade identically here.

**Ambient initialisation** ``DEFAULT_SH_INIT``: 0.8 on the DC coefficient of each colour, 0
elsewhere (Deep3DFaceRecon's ``init_lit``), added to the given coefficients, so ``sh = 0`` means
uniform white ambient light and a shading factor of ``0.8 * pi / sqrt(4 pi) ≈ 0.709``. Regressors
therefore predict ``sh`` as an offset around that light. Pass ``init=None`` for raw coefficients.
"""

from __future__ import annotations

import math

import torch

__all__ = [
    "SH_A",
    "SH_C",
    "DEFAULT_SH_INIT",
    "sh_basis",
    "sh_irradiance",
    "sh_shading",
    "face_normals",
    "vertex_normals",
]

SH_A = (math.pi, 2 * math.pi / math.sqrt(3.0), 2 * math.pi / math.sqrt(8.0))
SH_C = (
    1 / math.sqrt(4 * math.pi),
    math.sqrt(3.0) / math.sqrt(4 * math.pi),
    3 * math.sqrt(5.0) / math.sqrt(12 * math.pi),
)

#: (27,) float32 ambient initialisation (0.8 on each colour's DC term). Do not modify in place.
DEFAULT_SH_INIT = torch.tensor(([0.8] + [0.0] * 8) * 3, dtype=torch.float32)


def sh_basis(normals: torch.Tensor) -> torch.Tensor:
    """Deep3DFaceRecon's scaled SH basis ``(..., 9)`` (``a_l c_l Y_lm``) at unit ``normals (..., 3)``."""
    x, y, z = normals.unbind(-1)
    a0, a1, a2 = SH_A
    c0, c1, c2 = SH_C
    k1 = a1 * c1
    k2 = a2 * c2
    return torch.stack(
        [
            torch.full_like(x, a0 * c0),
            -k1 * y,
            k1 * z,
            -k1 * x,
            k2 * x * y,
            -k2 * y * z,
            0.5 * k2 / math.sqrt(3.0) * (3 * z * z - 1),
            -k2 * x * z,
            0.5 * k2 * (x * x - y * y),
        ],
        dim=-1,
    )


def _gamma(sh: torch.Tensor, init: torch.Tensor | None) -> torch.Tensor:
    if sh.shape[-1] != 27:
        raise ValueError(f"sh must be (B, 27), got {tuple(sh.shape)}")
    g = sh.reshape(-1, 3, 9)
    if init is not None:
        g = g + init.to(sh.device, sh.dtype).reshape(1, 3, 9)
    return g


def sh_irradiance(
    normals: torch.Tensor, sh: torch.Tensor, init: torch.Tensor | None = DEFAULT_SH_INIT
) -> torch.Tensor:
    """Per-colour shading factor ``(B, V, 3)`` for ``normals (B, V, 3)`` and ``sh (B, 27)``."""
    g = _gamma(sh, init)  # (B, 3, 9)
    return sh_basis(normals) @ g.transpose(1, 2)


def sh_shading(
    normals: torch.Tensor,
    albedo: torch.Tensor,
    sh: torch.Tensor,
    init: torch.Tensor | None = DEFAULT_SH_INIT,
) -> torch.Tensor:
    """Lambertian SH shading: ``albedo (B, V, 3) * sh_irradiance(normals, sh, init)`` → ``(B, V, 3)``.

    ``normals`` must be unit length (not re-normalised, as in Deep3DFaceRecon); the result is not
    clamped.
    """
    return sh_irradiance(normals, sh, init) * albedo


def face_normals(verts: torch.Tensor, faces: torch.Tensor, normalize: bool = True) -> torch.Tensor:
    """``(B, F, 3)`` face normals ``(v1 - v0) x (v2 - v0)`` (outward for CCW faces)."""
    faces = faces.to(verts.device, torch.int64)
    v0, v1, v2 = verts[:, faces[:, 0]], verts[:, faces[:, 1]], verts[:, faces[:, 2]]
    n = torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-12) if normalize else n


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """``(B, V, 3)`` unit vertex normals: sum of the unit normals of incident faces, normalised
    (Deep3DFaceRecon's ``compute_norm``). Unused vertices get a zero normal."""
    faces = faces.to(verts.device, torch.int64)
    fn = face_normals(verts, faces)  # (B, F, 3)
    B, V = verts.shape[:2]
    vn = verts.new_zeros(B, V, 3)
    for k in range(3):
        vn = vn.index_add(1, faces[:, k], fn)
    return torch.nn.functional.normalize(vn, dim=-1, eps=1e-12)
