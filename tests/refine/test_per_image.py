"""Per-image GCN texture refinement on the real astronaut photo (paper's losses, no critic)."""

import pytest
import torch

from facegcn.config import RefineOptions
from facegcn.evaluate.metrics import composite, descriptor_cosine, masked_psnr
from facegcn.pipeline import Reconstructor
from facegcn.refine.losses import vertex_weights
from facegcn.refine.per_image import refine_texture


def test_vertex_weight_schedule_matches_paper():
    assert vertex_weights(0) == (0.0, 1.0)
    assert vertex_weights(2) == pytest.approx((0.4, 0.6))
    assert vertex_weights(4) == pytest.approx((0.8, 0.2))  # ref clipped at 0.2 from epoch 4 on
    assert vertex_weights(10) == (1.0, 0.2)


@pytest.mark.slow
def test_refinement_beats_coarse_on_astronaut(artifacts_dir):
    from skimage import data

    from facegcn.cli.reconstruct import build_config

    cfg = build_config(quiet=True, refine=False, fast=True)
    rec = Reconstructor(cfg)
    photo, obs = rec.observe(data.astronaut())
    obs = obs[0]
    co = rec.fit_coarse(obs)
    mask = co.rendering.mask[0] * obs.face_mask.float()[None]
    p_coarse = masked_psnr(co.rendering.image[0], obs.image, mask)
    res = refine_texture(rec.model, rec.fitter.syn, obs, co, RefineOptions(steps=100))
    p_ref = masked_psnr(res.render, obs.image, mask)
    def identity_cosine(render):  # the render over the photo vs the photo's own descriptor
        return descriptor_cosine(composite(render, co.rendering.mask[0], obs.image), obs.identity, obs.chip_transform)

    id_coarse = identity_cosine(co.rendering.image[0])
    id_ref = identity_cosine(res.render)
    print(f"astronaut: PSNR coarse {p_coarse:.2f} → refined {p_ref:.2f} dB; identity cos {id_coarse:.4f} → {id_ref:.4f}")
    assert p_ref - p_coarse >= 3.0
    assert id_ref > id_coarse
    assert res.albedo.shape == (rec.model.n_vertices, 3)
    assert float(res.albedo.min()) >= 0 and float(res.albedo.max()) <= 1
    from PIL import Image

    row = torch.cat([obs.image, co.rendering.image[0].clamp(0, 1), res.render.clamp(0, 1)], 2)
    Image.fromarray((row.permute(1, 2, 0).numpy() * 255).astype("uint8")).save(artifacts_dir / "refine_astronaut.png")
