"""Image / texture sampling. References: direct pixel lookup and hand-computed bilinear
weights; gradcheck; consistency with the projection (sample the rendered image at the projected
vertices)."""

from __future__ import annotations

import torch

from facegcn.render import (
    PerspectiveCamera,
    Renderer,
    interpolate,
    rasterize,
    sample_image,
    sample_texture,
)
from facegcn.render.meshgen import grid_faces


def test_sample_image_pixel_centres_and_bilinear():
    g = torch.Generator().manual_seed(0)
    img = torch.rand(2, 3, 7, 9, generator=g)
    px = torch.tensor([[[0.0, 0.0], [8.0, 6.0], [3.0, 2.0]], [[4.0, 5.0], [2.5, 1.0], [2.0, 1.25]]])
    out = sample_image(img, px)
    assert out.shape == (2, 3, 3)
    torch.testing.assert_close(out[0, 0], img[0, :, 0, 0])
    torch.testing.assert_close(out[0, 1], img[0, :, 6, 8])
    torch.testing.assert_close(out[0, 2], img[0, :, 2, 3])
    torch.testing.assert_close(out[1, 0], img[1, :, 5, 4])
    torch.testing.assert_close(out[1, 1], 0.5 * (img[1, :, 1, 2] + img[1, :, 1, 3]))
    torch.testing.assert_close(out[1, 2], 0.75 * img[1, :, 1, 2] + 0.25 * img[1, :, 2, 2])
    # outside: clamped to the border
    torch.testing.assert_close(sample_image(img, torch.tensor([[[-3.0, 2.0]]] * 2))[0, 0], img[0, :, 2, 0])


def test_sample_image_gradcheck():
    img = torch.rand(1, 2, 5, 6, dtype=torch.float64, requires_grad=True)
    px = torch.tensor([[[1.3, 2.7], [4.2, 0.4]]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(sample_image, (img, px))


def test_sample_texture_uv_convention():
    tex = torch.arange(12.0).view(1, 1, 3, 4)  # rows top→bottom
    # texel (row r, col c) centre at ((c + .5) / 4, 1 - (r + .5) / 3)
    uv = torch.tensor([[[0.5 / 4, 1 - 0.5 / 3], [3.5 / 4, 1 - 2.5 / 3], [2.0 / 4, 0.5]]])
    out = sample_texture(tex[0], uv)  # shared (C, Ht, Wt)
    torch.testing.assert_close(out[0, :, 0], torch.tensor([0.0, 11.0, 0.5 * (5.0 + 6.0)]))
    uv_img = uv.view(1, 1, 3, 2)
    assert sample_texture(tex, uv_img).shape == (1, 1, 3, 1)


def test_textured_plane_reproduces_texture():
    """A frontal quad textured with a 2x2 checker and UV (0..1) mapped exactly onto a
    16x16-pixel square shows the texture's texels in the matching image quadrants."""
    cam = PerspectiveCamera(focal=100.0, center=(15.5, 15.5), size=(32, 32))
    half = 8 * 10.0 / 100.0  # 8 px at depth 10
    q = torch.tensor([[-half, half, 0.0], [half, half, 0.0], [-half, -half, 0.0], [half, -half, 0.0]])
    # the quad's corners project to pixel coordinates 7.5 and 23.5: 16 pixels, 7.5 .. 23.5
    uv = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.0, 0.0], [1.0, 0.0]])
    tex = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]]).expand(3, -1, -1)
    r = Renderer(cam, grid_faces(2, 2))
    out = r(q[None], texture=tex, uv=uv)
    img = out.image[0, 0]
    assert out.mask[0, 0, 8:24, 8:24].all() and out.mask.sum() == 256
    # pixel j sits at u = (j - 7.5) / 16; texel centres at u = 0.25, 0.75, so pixels 8..11 and
    # 20..23 are pure texels, and in between the bilinear blend is linear in u
    assert img[8:12, 8:12].min() > 0.999 and img[20:24, 20:24].min() > 0.999
    assert img[8:12, 20:24].max() < 1e-3 and img[20:24, 8:12].max() < 1e-3
    u = (torch.arange(12, 20) - 7.5) / 16
    torch.testing.assert_close(img[8, 12:20], 1 - (u - 0.25) / 0.5)


def test_sampling_rendered_image_at_projected_vertices():
    """Render a smooth colour field, then sample the image at the projected vertices: the
    colours come back (projection, rasterizer and sampler share one pixel convention)."""
    cam = PerspectiveCamera()
    n = 33
    ys, xs = torch.meshgrid(torch.linspace(0.8, -0.8, n), torch.linspace(-0.8, 0.8, n), indexing="ij")
    v = torch.stack([xs, ys, 0.2 * (xs + ys)], -1).reshape(1, -1, 3)
    col = torch.stack([0.5 + 0.5 * xs, 0.5 + 0.4 * ys, 0.3 + 0.2 * xs * ys], -1).reshape(1, -1, 3)
    f = grid_faces(n, n)
    vs = cam.to_screen(v)
    fr = rasterize(vs, f, cam.size)
    img = interpolate(col, f, fr, vs).permute(0, 3, 1, 2)
    inner = ((xs.abs() < 0.7) & (ys.abs() < 0.7)).reshape(1, -1)
    back = sample_image(img, cam.project(v))
    err = (back - col).abs()[inner]
    assert err.max() < 3e-3
