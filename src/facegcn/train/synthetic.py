"""Synthetic training data: random 3DMM faces rendered with exact landmarks and masks.

:func:`make_synthetic_cache` writes a cache in the ``prepare`` format (plus the ground-truth
coefficients), so training can be tested end to end without photos or a face detector.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from facegcn.train.data import FaceRow, shard_name, write_index, write_shard


def random_coefficients(model, seed: int, batch: int = 1, expression: float = 0.3, pose: float = 0.5):
    """Random identity / expression / albedo / pose / light (the synthetic ground truth)."""
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
    """(images (B,3,224,224) in [0,1] quantised to uint8 steps, landmarks (B,68,2), render masks
    (B,224,224) bool, coefficients (B,K))."""
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
    """Render ``n`` random faces into a cache at ``out``; returns the index. ``identity=True``
    also computes the dlib descriptors of the renders (through the canonical chip transform)."""
    from facegcn.coarse.synthesis import FaceSynthesis
    from facegcn.frontend.identity import canonical_chip_transform
    from facegcn.morphable import load_model

    m = load_model(model)
    syn = FaceSynthesis(m)
    out = Path(out)
    (out / "shards").mkdir(parents=True, exist_ok=True)
    ct = canonical_chip_transform()
    net = None
    if identity:
        from facegcn.frontend.identity import load_identity_net

        net = load_identity_net()
    rows: list[FaceRow] = []
    for start in range(0, n, chunk):
        b = min(chunk, n - start)
        img, lm, mask, coeffs = render_synthetic(m, syn, seed * 100003 + start, b)
        feats = torch.full((b, 128), float("nan"))
        if net is not None:
            from facegcn.frontend.identity import embed_aligned

            with torch.no_grad():
                feats = embed_aligned(img, ct, net)
        for i in range(b):
            rows.append(FaceRow(
                image=(img[i].numpy() * 255 + 0.5).astype(np.uint8),
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
