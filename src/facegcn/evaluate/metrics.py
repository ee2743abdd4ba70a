"""Image, identity, landmark and geometry metrics of a reconstruction.

Conventions: images are float ``(3, H, W)`` tensors in ``[0, 1]`` (renders are clamped), masks
``(H, W)`` / ``(1, H, W)`` with values in ``[0, 1]`` (used as weights; the evaluation mask is the
render mask ∩ the face mask). Every masked metric returns ``nan`` for an empty mask.

* :func:`masked_psnr` — peak 1, MSE over the masked pixels × 3 channels;
* :func:`masked_ssim` — SSIM map of the *full* images (Wang et al. 2004: Gaussian window 11,
  σ = 1.5, K1 = 0.01, K2 = 0.03, data range 1, reflect padding; the same map as scikit-image's
  ``structural_similarity(..., gaussian_weights=True, use_sample_covariance=False, full=True)``
  away from the border), averaged over channels and then inside the mask;
* :func:`masked_l1` — mean absolute difference over the masked pixels × 3 channels;
* :func:`identity_cosine` — cosine of the dlib-ResNet descriptors of two aligned images, both cut
  to the 150² identity chip with the same ``chip_transform`` (:func:`chip_from_aligned`);
* :func:`descriptor_cosine` — cosine between an aligned image's descriptor and a given reference
  descriptor (e.g. the photo's own, computed by the front-end from the original photo);
* :func:`landmark_nme` — landmark error normalised by the inter-ocular (outer eye corners) distance;
* :func:`rigid_aligned_error` — per-vertex distance after the best rotation + translation (Kabsch).

LPIPS is not provided (see CONTRIBUTING.md).
"""

from __future__ import annotations

import math

import numpy as np
import torch

from facegcn.frontend.identity import IdentityEncoder
from facegcn.io.imageops import composite as _composite

__all__ = [
    "masked_psnr",
    "masked_ssim",
    "ssim_map",
    "masked_l1",
    "error_map",
    "identity_cosine",
    "identity_descriptor",
    "descriptor_cosine",
    "landmark_nme",
    "rigid_aligned_error",
    "vertex_psnr",
    "composite",
]


def _mask2d(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    m = mask.to(like.device, like.dtype)
    return m.reshape(like.shape[-2:])


def masked_psnr(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR in dB (peak 1) of ``a`` (clamped to [0, 1]) against ``b`` inside ``mask``.

    Shapes: ``a``, ``b`` ``(3, H, W)`` float in [0, 1]; ``mask`` ``(H, W)`` or ``(1, H, W)`` weights.
    Returns ``nan`` for an empty mask.
    """
    m = mask.reshape(1, *a.shape[-2:]).to(a.dtype)
    n = float(m.sum()) * 3
    if n == 0:
        return float("nan")
    mse = float((((a.clamp(0, 1) - b) ** 2) * m).sum()) / n
    return float(10 * np.log10(1.0 / max(mse, 1e-12)))


def landmark_nme(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean landmark error normalised by the inter-ocular distance (outer eye corners 36, 45).

    Shapes: ``pred``, ``target`` ``(68, 2)`` pixels (Multi-PIE order).
    """
    io = float(np.linalg.norm(target[36] - target[45]))
    return float(np.linalg.norm(pred - target, axis=1).mean() / max(io, 1e-6))


def composite(render: torch.Tensor, render_mask: torch.Tensor, photo: torch.Tensor) -> torch.Tensor:
    """The render pasted over the photo: ``render * m + photo * (1 - m)`` (render clamped to [0, 1]).

    Shapes: ``render``, ``photo`` ``(3, H, W)``; ``render_mask`` ``(H, W)`` or ``(1, H, W)``."""
    render = render.to(photo.device, photo.dtype)
    return _composite(render, _mask2d(render_mask, photo)[None], photo)


def ssim_map(a: torch.Tensor, b: torch.Tensor, sigma: float = 1.5, size: int = 11,
             k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Per-pixel SSIM ``(H, W)`` of two ``(3, H, W)`` images in [0, 1] (mean over channels).

    Wang et al. (2004) with a Gaussian window (σ = 1.5, 11 taps — scikit-image's
    ``gaussian_weights=True, use_sample_covariance=False``), data range 1, reflect padding so the
    map has the image's size. Float32; the (co)variances are computed on mean-centred images to
    avoid cancellation."""
    x = a.detach().float().clamp(0, 1)
    y = b.detach().float().clamp(0, 1).to(x.device)
    C = x.shape[0]
    t = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(t**2) / (2 * sigma**2))
    g = (g / g.sum()).float().to(x.device)
    w = (g[:, None] * g[None, :]).expand(5 * C, 1, size, size)
    cx = x.mean(dim=(1, 2), keepdim=True)
    cy = y.mean(dim=(1, 2), keepdim=True)
    xc, yc = x - cx, y - cy
    stack = torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], 0)[None]
    p = size // 2
    f = torch.nn.functional.conv2d(torch.nn.functional.pad(stack, (p, p, p, p), mode="reflect"), w, groups=5 * C)[0]
    mxc, myc, exx, eyy, exy = f.split(C)
    sxx, syy, sxy = exx - mxc**2, eyy - myc**2, exy - mxc * myc
    mx, my = mxc + cx, myc + cy
    c1, c2 = k1**2, k2**2
    s = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    return s.mean(0)


def masked_ssim(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """SSIM map of the full images, averaged inside ``mask`` (weights)."""
    m = _mask2d(mask, a).float()
    w = float(m.sum())
    if w <= 0:
        return float("nan")
    s = ssim_map(a, b).to(m.device)
    return float((s * m).sum() / w)


def masked_l1(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> float:
    """Mean |a − b| over the masked pixels and the 3 channels (a clamped to [0, 1])."""
    m = _mask2d(mask, a)[None]
    n = float(m.sum()) * a.shape[0]
    if n <= 0:
        return float("nan")
    return float(((a.detach().clamp(0, 1) - b.to(a.device)).abs() * m).sum()) / n


def error_map(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> np.ndarray:
    """Per-pixel mean-over-channels |a − b| (H, W) numpy, NaN outside the mask (for heat-maps)."""
    m = _mask2d(mask, a).detach().cpu().numpy()
    e = (a.detach().clamp(0, 1) - b.to(a.device)).abs().mean(0).cpu().numpy()
    return np.where(m > 0.5, e, np.nan).astype(np.float32)


def _encoder(encoder: IdentityEncoder | None, image: torch.Tensor) -> IdentityEncoder:
    return encoder if encoder is not None else IdentityEncoder(device=image.device)


def identity_descriptor(image: torch.Tensor, chip_transform, encoder: IdentityEncoder | None = None) -> torch.Tensor:
    """dlib-ResNet descriptor ``(128,)`` of an aligned ``(3, H, W)`` image through ``chip_transform``
    (the observation's 2×3 chip → aligned affine), without gradients."""
    with torch.no_grad():
        return _encoder(encoder, image).embed_aligned(image.detach().clamp(0, 1)[None].float(), chip_transform)[0]


def identity_cosine(a: torch.Tensor, b: torch.Tensor, chip_transform, encoder: IdentityEncoder | None = None) -> float:
    """Cosine similarity of the identity descriptors of two aligned ``(3, H, W)`` images (same chip
    transform)."""
    fa = identity_descriptor(a, chip_transform, encoder)
    return descriptor_cosine(b, fa, chip_transform, encoder)


def descriptor_cosine(image: torch.Tensor, reference: torch.Tensor, chip_transform,
                      encoder: IdentityEncoder | None = None) -> float:
    """Cosine similarity of an aligned ``(3, H, W)`` image's descriptor and a ``reference (128,)``
    descriptor (e.g. ``FaceObservation.identity``, the photo's own)."""
    f = identity_descriptor(image, chip_transform, encoder)
    return float(torch.nn.functional.cosine_similarity(f[None], reference[None].to(f.device, f.dtype))[0])


def rigid_aligned_error(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Per-vertex distance between point sets ``a`` and ``b`` (N, 3) after the rotation +
    translation that best maps ``a`` onto ``b`` (Kabsch, no scale, no reflection)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    a = a - a.mean(0)
    b = b - b.mean(0)
    U, _, Vt = np.linalg.svd(b.T @ a)
    D = np.diag([1.0, 1.0, np.sign(np.linalg.det(U @ Vt))])
    return np.linalg.norm(a @ (U @ D @ Vt).T - b, axis=1)


def vertex_psnr(pred: torch.Tensor, target: torch.Tensor, select: torch.Tensor | None = None,
                gain: bool = False) -> float:
    """PSNR (dB, peak 1) of per-vertex colours ``(V, 3)`` (pred clamped to [0, 1]) over the
    selected vertices (bool or index tensor). ``gain=True`` first applies the per-channel scale
    that minimises the error (removes the albedo/light scale ambiguity of single-image fitting)."""
    p = pred.detach().float().clamp(0, 1).cpu()
    t = target.detach().float().cpu()
    if select is not None:
        p, t = p[select.cpu()], t[select.cpu()]
    if p.shape[0] == 0:
        return float("nan")
    if gain:
        k = (p * t).sum(0) / (p * p).sum(0).clamp_min(1e-12)
        p = (p * k).clamp(0, 1)
    mse = float(((p - t) ** 2).mean())
    return 10.0 * math.log10(1.0 / max(mse, 1e-12))
