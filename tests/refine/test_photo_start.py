"""Where the per-image refinement starts (refine.photo_start).

Reference: a render of the model with a known, smooth per-vertex albedo under a known SH light —
the de-lit photo colour at a seen vertex is that vertex's albedo (up to the bilinear reading of the
224² render), whatever albedo the start is given; outside the face mask the given albedo is kept
exactly; a vertex hidden by the mask takes its mirror vertex's albedo."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from facegcn.apps.evaluate.scenes import make_scene, scene_observation
from facegcn.coarse.fit import CoarseResult
from facegcn.coarse.synthesis import FaceSynthesis
from facegcn.refine.photo_start import photo_start_albedo
from facegcn.render import sh_irradiance


@pytest.mark.slow
def test_the_start_is_the_de_lit_photo_where_seen_and_the_mirror_where_hidden(ict):
    syn = FaceSynthesis(ict)
    scene = make_scene(ict, syn, 3)
    with torch.no_grad():
        st = syn.state(scene.coeffs)
        r = syn.render(st)
        coarse = CoarseResult(scene.coeffs, st, r)
        irr = sh_irradiance(st.normals, scene.coeffs.sh)
    truth = st.albedo.clamp(0, 1)  # what the image was rendered with
    face = scene.labels > 0
    hidden = face.clone()
    hidden[:, :112] = False  # the face mask drops the image's left half and its top
    hidden[:80] = False
    obs = replace(scene_observation(scene), image=r.image[0].clamp(0, 1), face_mask=hidden)
    given = torch.full_like(truth, 0.5)
    out = photo_start_albedo(ict, syn, obs, coarse, given, irr)
    assert out.shape == truth.shape and torch.isfinite(out).all()

    px = st.verts_px[0, :, :2]
    u = px[:, 0].round().long().clamp(0, 223)
    v = px[:, 1].round().long().clamp(0, 223)
    vis = r.visibility.reshape(-1)
    # strictly inside the kept half (2 px from its edge), visible, in the face, light above the floor
    mean = irr[0][vis].mean(0)
    lit = (irr[0] >= 0.7 * mean).all(-1)
    inside = torch.zeros(224, 224, dtype=torch.bool)
    inside[83:-3, 115:-3] = True
    er = hidden & torch.roll(hidden, 2, 0) & torch.roll(hidden, -2, 0) & torch.roll(hidden, 2, 1) & torch.roll(hidden, -2, 1)
    seen = vis & lit & (er & inside)[v, u]
    assert seen.sum() > 1000
    err = (out[0, seen] - truth[0, seen]).abs().mean()
    assert float(err) < 0.02, float(err)  # the given 0.5 is ~0.2 away
    assert float((given[0, seen] - truth[0, seen]).abs().mean()) > 0.1

    # outside the mask, and so is its mirror: the given albedo, unchanged
    mirror = ict.mirror_index()
    near = torch.nn.functional.max_pool2d(hidden[None, None].float(), 5, 1, 2)[0, 0] > 0  # dilated by 2 px
    frame = (px >= 0).all(-1) & (px <= 223).all(-1)
    off = ~near[v, u] & ~near[v[mirror], u[mirror]] & frame & frame[mirror]
    assert off.sum() > 1000
    assert torch.equal(out[0, off], given[0, off])

    # hidden by the mask, its mirror seen head-on: the mirror's colour
    masked = vis & (px[:, 0] < 108) & (px[:, 1] > 84) & face[v, u]
    take = masked & seen[mirror]
    assert take.sum() > 200
    err_m = (out[0, take] - truth[0, mirror[take]]).abs().mean()
    assert float(err_m) < 0.03, float(err_m)
