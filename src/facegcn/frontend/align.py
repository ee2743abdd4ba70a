"""Alignment: a similarity transform from 5 facial points to a canonical 224×224 template.

The template is Deep3DFaceRecon's: its ``align_img`` fits the 5 points (eye centres, nose tip,
mouth corners) of the standard BFM landmark set ``similarity_Lm3D_all.mat`` (centred, scaled by
``rescale_factor = 102``) to the photo and crops 224×224 around it, which places the 3-D template
point (X, Y, Z) at pixel (112 + 102 X, 112 - 102 Y). :data:`TEMPLATE_224` holds those values.
Deep3DFaceRecon fits scale + translation only; here the in-plane rotation is fitted too by default
(``rotation=False`` reproduces the Deep3DFaceRecon behaviour).

The 5 points are derived from dlib's 68 landmarks (0-based): eye centre = mean of the six contour
points of each eye (36-41, 42-47), nose tip = 30, mouth corners = 48 and 54 (image-left first).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from facegcn.frontend.geometry import apply_affine, compose_affine, invert_affine, umeyama_similarity

ALIGNED_SIZE = 224

# (x, y) in the aligned 224x224 crop: image-left eye centre, image-right eye centre, nose tip,
# image-left mouth corner, image-right mouth corner.
TEMPLATE_224 = np.array(
    [
        [80.2284, 82.3832],
        [143.5995, 82.4485],
        [112.3319, 116.7103],
        [86.2787, 150.8966],
        [137.3436, 150.8908],
    ]
)


def five_from_68(landmarks68: np.ndarray) -> np.ndarray:
    """(68,2) dlib landmarks → (5,2): eye centres, nose tip, mouth corners (image-left first)."""
    lm = np.asarray(landmarks68, np.float64).reshape(68, 2)
    return np.stack([lm[36:42].mean(0), lm[42:48].mean(0), lm[30], lm[48], lm[54]])


@dataclass(frozen=True, eq=False)
class Alignment:
    """``matrix`` maps photo pixels → aligned pixels (2x3 similarity); ``inverse`` the reverse."""

    matrix: np.ndarray
    inverse: np.ndarray
    size: int = ALIGNED_SIZE

    @property
    def scale(self) -> float:
        """Aligned pixels per photo pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.matrix[:, :2]))))

    def to_aligned(self, pts: np.ndarray) -> np.ndarray:
        return apply_affine(self.matrix, pts)

    def to_photo(self, pts: np.ndarray) -> np.ndarray:
        return apply_affine(self.inverse, pts)


def estimate_alignment(points5: np.ndarray, *, rotation: bool = True, template: np.ndarray = TEMPLATE_224,
                       size: int = ALIGNED_SIZE) -> Alignment:
    m = umeyama_similarity(points5, template, rotation=rotation)
    return Alignment(matrix=m, inverse=invert_affine(m), size=size)


def _gaussian_blur(img: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur of a (1,C,H,W) tensor (reflect padding)."""
    radius = max(1, int(np.ceil(3 * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=img.dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    c = img.shape[1]
    pad_h = min(radius, img.shape[2] - 1)
    pad_w = min(radius, img.shape[3] - 1)
    if pad_h < radius or pad_w < radius:  # tiny images: fall back to replicate padding
        img = F.pad(img, (radius, radius, radius, radius), mode="replicate")
    else:
        img = F.pad(img, (radius, radius, radius, radius), mode="reflect")
    img = F.conv2d(img, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(img, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def _window(m: np.ndarray, out_hw: tuple[int, int], in_hw: tuple[int, int], margin: int) -> tuple[int, int, int, int]:
    oh, ow = out_hw
    h, w = in_hw
    corners = apply_affine(m, np.array([[0, 0], [ow - 1, 0], [0, oh - 1], [ow - 1, oh - 1]], np.float64))
    x0 = int(np.clip(np.floor(corners[:, 0].min()) - margin, 0, w - 1))
    x1 = int(np.clip(np.ceil(corners[:, 0].max()) + margin, 0, w - 1))
    y0 = int(np.clip(np.floor(corners[:, 1].min()) - margin, 0, h - 1))
    y1 = int(np.clip(np.ceil(corners[:, 1].max()) + margin, 0, h - 1))
    return x0, y0, x1, y1


def warp_affine(src, out_to_src: np.ndarray, out_hw: tuple[int, int], *, antialias_scale: float = 1.0,
                mode: str = "bilinear") -> torch.Tensor:
    """Sample ``src`` at ``out_to_src`` (2x3) for every output pixel; zeros outside. ``src``: a
    (1,C,H,W) float tensor, or a uint8 (H,W,C) array (values then come back in [0,1]; only the
    window the output needs is converted to float, so large photos stay cheap). Returns (1,C,h,w).

    ``antialias_scale`` = output pixels per source pixel: below 1 the source is low-pass filtered
    first (σ = (1/s - 1)/2, as skimage's ``rescale``)."""
    m = np.asarray(out_to_src, np.float64)
    sigma = max(0.0, (1.0 / antialias_scale - 1.0) / 2.0) if antialias_scale < 1 else 0.0
    margin = int(np.ceil(3 * sigma)) + 2
    if isinstance(src, np.ndarray):
        x0, y0, x1, y1 = _window(m, out_hw, src.shape[:2], margin)
        win = torch.from_numpy(np.array(src[y0 : y1 + 1, x0 : x1 + 1], dtype=np.float32)).permute(2, 0, 1)[None]
        win = win / 255.0 if src.dtype == np.uint8 else win
    else:
        x0, y0, x1, y1 = _window(m, out_hw, tuple(src.shape[2:]), margin)
        win = src[:, :, y0 : y1 + 1, x0 : x1 + 1]
    if sigma > 0.3 and min(win.shape[2:]) > 1:
        win = _gaussian_blur(win, sigma)
    m_win = m.copy()
    m_win[:, 2] -= np.array([x0, y0], np.float64)
    oh, ow = out_hw
    wh, ww = win.shape[2], win.shape[3]
    ys, xs = np.meshgrid(np.arange(oh, dtype=np.float64), np.arange(ow, dtype=np.float64), indexing="ij")
    sx = m_win[0, 0] * xs + m_win[0, 1] * ys + m_win[0, 2]
    sy = m_win[1, 0] * xs + m_win[1, 1] * ys + m_win[1, 2]
    grid = np.stack([2 * sx / max(ww - 1, 1) - 1, 2 * sy / max(wh - 1, 1) - 1], axis=-1)
    grid_t = torch.from_numpy(grid).to(win.dtype)[None]
    return F.grid_sample(win, grid_t, mode=mode, padding_mode="zeros", align_corners=True)


def align_photo(pixels: np.ndarray, alignment: Alignment) -> torch.Tensor:
    """The aligned crop (3,size,size) float32 in [0,1] of a uint8 (H,W,3) photo (black outside)."""
    out = warp_affine(np.asarray(pixels, np.uint8), alignment.inverse, (alignment.size, alignment.size),
                      antialias_scale=alignment.scale)
    return out[0].clamp(0.0, 1.0)


def photo_coverage(photo_hw: tuple[int, int], alignment: Alignment) -> np.ndarray:
    """Bool (size,size): which aligned pixels fall inside the photo."""
    h, w = photo_hw
    n = alignment.size
    ys, xs = np.meshgrid(np.arange(n, dtype=np.float64), np.arange(n, dtype=np.float64), indexing="ij")
    p = apply_affine(alignment.inverse, np.stack([xs.ravel(), ys.ravel()], 1))
    ok = (p[:, 0] >= -0.5) & (p[:, 0] <= w - 0.5) & (p[:, 1] >= -0.5) & (p[:, 1] <= h - 0.5)
    return ok.reshape(n, n)


def warp_to_photo(aligned: torch.Tensor | np.ndarray, alignment: Alignment, photo_hw: tuple[int, int],
                  *, mode: str = "bilinear") -> torch.Tensor:
    """Map an aligned-space image (C,size,size) or (size,size) back onto the photo grid (C,H,W)
    (zeros where the aligned crop does not reach). Use ``mode="nearest"`` for label maps."""
    t = torch.as_tensor(aligned)
    squeeze = t.ndim == 2
    if squeeze:
        t = t[None]
    src = t[None].float()
    h, w = photo_hw
    n = src.shape[-1]
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    m = alignment.matrix
    sx = m[0, 0] * xs + m[0, 1] * ys + m[0, 2]
    sy = m[1, 0] * xs + m[1, 1] * ys + m[1, 2]
    grid = torch.from_numpy(np.stack([2 * sx / (n - 1) - 1, 2 * sy / (n - 1) - 1], axis=-1)).float()[None]
    out = F.grid_sample(src, grid, mode=mode, padding_mode="zeros", align_corners=True)[0]
    return out[0] if squeeze else out


__all__ = [
    "ALIGNED_SIZE",
    "TEMPLATE_224",
    "Alignment",
    "align_photo",
    "compose_affine",
    "estimate_alignment",
    "five_from_68",
    "photo_coverage",
    "warp_affine",
    "warp_to_photo",
]
