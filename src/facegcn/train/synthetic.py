"""Synthetic training data: random 3DMM faces rendered with exact landmarks and masks.

:func:`make_synthetic_cache` writes a cache in the ``prepare`` format (plus the ground-truth
coefficients), so training can be tested end to end without photos or a face detector.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from facegcn.coarse.synthesis import FaceSynthesis
from facegcn.frontend.identity import IdentityEncoder, canonical_chip_transform
from facegcn.io.imageops import to_uint8
from facegcn.morphable import load_model
from facegcn.train.data import FaceRow, shard_name, write_index, write_shard

__all__ = ["make_synthetic_cache", "random_coefficients", "render_synthetic"]


def random_coefficients(model, seed: int, batch: int = 1, expression: float = 0.3, pose: float = 0.5):
    """Random identity / expression / albedo / pose / light (the synthetic ground truth).

    Args:
        model: the :class:`~facegcn.morphable.MorphableModel` (its coefficient layout).
        seed: seeds a private generator (the global RNG is not touched).
        batch: number of faces.
        expression: expression weights are uniform in ``[0, expression]``.
        pose: rotation angles are uniform in ``[-pose/2, pose/2]`` radians.

    Returns:
        The model's split coefficients: id ``N(0, 0.8²)``, tex ``N(0, 0.7²)``, translation uniform
        in ``[-0.2, 0.2]``, SH ``N(0, 0.1²)``; each a ``(batch, n)`` float32 CPU tensor.
    """
    L = model.layout
    g = torch.Generator().manual_seed(int(seed))
    c = L.split(torch.zeros(batch, L.total))
    return replace(
        c,
        id=torch.randn(batch, L.id, generator=g) * 0.8,
        exp=torch.rand(batch, L.exp, generator=g) * expression,
        tex=torch.randn(batch, L.tex, generator=g) * 0.7,
        angles=(torch.rand(batch, 3, generator=g) - 0.5) * pose,
        trans=(torch.rand(batch, 3, generator=g) - 0.5) * 0.4,
        sh=torch.randn(batch, 27, generator=g) * 0.1,
    )


def _background(g: torch.Generator, batch: int, size: int) -> torch.Tensor:
    """Smooth random backgrounds: a random colour plus low-frequency noise."""
    base = torch.rand(batch, 3, 1, 1, generator=g) * 0.8 + 0.1
    noise = torch.rand(batch, 3, 8, 8, generator=g) - 0.5
    noise = torch.nn.functional.interpolate(noise, size=(size, size), mode="bilinear", align_corners=False)
    return (base + 0.3 * noise).clamp(0, 1)


def render_synthetic(model, synthesis, seed: int, batch: int):
    """Render random faces over smooth random backgrounds.

    Args:
        model: the morphable model.
        synthesis: its :class:`~facegcn.coarse.synthesis.FaceSynthesis`.
        seed: faces from :func:`random_coefficients` with ``seed``, backgrounds with ``seed + 1``.
        batch: number of faces.

    Returns:
        ``(images, landmarks, masks, coefficients)``.

    Shapes:
        images ``(B, 3, 224, 224)`` float32 in ``[0, 1]``, quantised to multiples of 1/255;
        landmarks ``(B, 68, 2)`` aligned-crop pixels; masks ``(B, 224, 224)`` bool (render
        coverage); coefficients ``(B, K)`` flat. All on the CPU.
    """
    c = random_coefficients(model, seed, batch)
    g = torch.Generator().manual_seed(int(seed) + 1)
    with torch.no_grad():
        st = synthesis.state(c)
        r = synthesis.render(st)
        H = r.image.shape[-1]
        bg = _background(g, batch, H)
        img = (r.image.clamp(0, 1) * r.mask + bg * (1 - r.mask))
        img = torch.round(img * 255) / 255
    return img, st.landmarks, r.mask[:, 0] > 0.5, model.join(c)


def make_synthetic_cache(
    out: str | Path,
    n: int = 32,
    *,
    seed: int = 0,
    model: str = "ict",
    shard_size: int = 16,
    held_out: float = 0.0,
    identity: bool = False,
    chunk: int = 8,
) -> dict:
    """Render random faces into a training cache (the ``prepare`` format plus ``coeffs``).

    Args:
        out: the cache folder (created).
        n: number of faces.
        seed: the chunk starting at face ``s`` renders with seed ``seed * 100003 + s``; also the
            split seed.
        model: name of the morphable model.
        shard_size: rows per shard.
        held_out: fraction of items in the held-out split.
        identity: also compute the dlib descriptors of the renders (through the canonical chip
            transform); otherwise they are NaN.
        chunk: faces rendered per batch.

    Returns:
        The cache index (as written to ``index.json``).
    """
    m = load_model(model)
    syn = FaceSynthesis(m)
    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    ct = canonical_chip_transform()
    encoder = IdentityEncoder() if identity else None
    rows: list[FaceRow] = []
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        img, lm, mask, coeffs = render_synthetic(m, syn, seed * 100003 + start, b)
        feats = torch.full((b, 128), float("nan"))
        if encoder is not None:
            with torch.no_grad():
                feats = encoder.embed_aligned(img, ct)
        for i in range(b):
            rows.append(FaceRow(
                image=to_uint8(img[i].numpy()),  # exact: img holds multiples of 1/255
                landmarks=lm[i].numpy().astype(np.float32),
                face_mask=mask[i].numpy(),
                skin_weight=mask[i].numpy().astype(np.float16),
                identity=feats[i].numpy().astype(np.float32),
                chip_transform=np.asarray(ct, np.float64),
                coeffs=coeffs[i].numpy(),
            ))
    metas = []
    for k in range(0, n, shard_size):
        part = rows[k : k + shard_size]
        items = [{"source": f"synthetic/{seed}/{k + i:06d}", "status": "ok", "row": i} for i in range(len(part))]
        name = shard_name(k // shard_size)
        write_shard(out / name, part, items, meta={"synthetic": True, "seed": seed})
        metas.append((name, {"rows": len(part), "items": items}))
    return write_index(out, metas, seed=seed, held_out=held_out,
                       extra={"synthetic": {"model": m.name, "seed": seed, "n": n}})
