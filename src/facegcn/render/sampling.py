"""Bilinear sampling: image colours at projected vertices, and UV texture lookup.

* :func:`sample_image` uses the pixel convention of :mod:`facegcn.render.camera`: pixel
  ``(row i, col j)`` has its centre at ``(u=j, v=i)``; sampling exactly at a centre returns that
  pixel's value. Positions outside the image are clamped to the border (``padding_mode``).
* :func:`sample_texture` uses the OBJ/OpenGL UV convention: ``u`` in ``[0, 1]`` left→right,
  ``v`` in ``[0, 1]`` **bottom→top**; texel ``(row r, col c)`` of a ``(Ht, Wt)`` texture has its
  centre at ``((c + 0.5) / Wt, 1 - (r + 0.5) / Ht)``. Out-of-range UVs clamp to the border.

Both are differentiable w.r.t. the image/texture and the sampling positions.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["sample_image", "sample_texture"]


def sample_image(
    image: torch.Tensor, px: torch.Tensor, padding_mode: str = "border"
) -> torch.Tensor:
    """Bilinearly sample ``image (B, C, H, W)`` at pixel positions ``px (B, V, 2) = (u, v)`` →
    ``(B, V, C)`` (e.g. the photo's colours at the projected mesh vertices)."""
    if image.dim() != 4:
        raise ValueError(f"image must be (B, C, H, W), got {tuple(image.shape)}")
    B, C, H, W = image.shape
    if px.dim() != 3 or px.shape[0] != B or px.shape[-1] != 2:
        raise ValueError(f"px must be (B, V, 2) with B={B}, got {tuple(px.shape)}")
    px = px.to(image.dtype)
    gx = px[..., 0] * (2.0 / max(W - 1, 1)) - 1.0
    gy = px[..., 1] * (2.0 / max(H - 1, 1)) - 1.0
    grid = torch.stack([gx, gy], -1).unsqueeze(2)  # (B, V, 1, 2)
    out = F.grid_sample(image, grid, mode="bilinear", padding_mode=padding_mode, align_corners=True)
    return out[..., 0].transpose(1, 2)


def sample_texture(texture: torch.Tensor, uv: torch.Tensor) -> torch.Tensor:
    """Bilinearly sample ``texture (B, C, Ht, Wt)`` (or ``(C, Ht, Wt)`` shared) at ``uv (B, ..., 2)``
    → ``(B, ..., C)``. Typical use: ``uv = interpolate(uv_coords, faces, frags, verts_px,
    attr_faces=uv_faces)`` of shape ``(B, H, W, 2)``, giving a ``(B, H, W, C)`` image."""
    B = uv.shape[0]
    if texture.dim() == 3:
        texture = texture.unsqueeze(0).expand(B, -1, -1, -1)
    if texture.dim() != 4 or texture.shape[0] != B:
        raise ValueError(f"texture must be (B, C, Ht, Wt) or (C, Ht, Wt), got {tuple(texture.shape)}")
    lead = uv.shape[1:-1]
    g = uv.reshape(B, -1, 1, 2).to(texture.dtype)
    grid = torch.stack([g[..., 0] * 2.0 - 1.0, 1.0 - g[..., 1] * 2.0], -1)
    out = F.grid_sample(texture, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return out[..., 0].transpose(1, 2).reshape(B, *lead, texture.shape[1])
