"""The yaw-view figure renders the exported mesh: analytic checks on a textured square."""

import math

import numpy as np

from facegcn.io.textured import Material, TexturedMesh
from facegcn.pipeline.figures import yaw_views


def _square(colour=(200, 40, 10)) -> TexturedMesh:
    v = np.array([[-1, -1, 0], [1, -1, 0], [1, 1, 0], [-1, 1, 0]], np.float32) * 0.1
    f = np.array([[0, 1, 2], [0, 2, 3]], np.int64)
    uv = np.array([[0, 0], [1, 0], [1, 1], [0, 1]], np.float32)
    tex = np.zeros((8, 8, 3), np.uint8)
    tex[:] = colour
    n = np.tile(np.array([[0, 0, 1]], np.float32), (4, 1))
    return TexturedMesh(v, n, np.full((4, 3), 0.5, np.float32), uv, (Material("face", f, f, tex),))


def test_yaw_views_panels_texture_and_light():
    mesh = _square()
    first = np.zeros((64, 64, 3), np.uint8)
    row = yaw_views(mesh, (0.0, 60.0), size=64, first=first)
    assert row.shape == (64, 192, 3) and row.dtype == np.uint8
    assert (row[:, :64] == 0).all()  # the given first panel, untouched
    front = row[:, 64:128].astype(float)
    # unit normal (0,0,1) under the light (-0.3, 0.35, 1)/|.|: shade = 0.45 + 0.55 · cos
    cos = 1.0 / math.sqrt(0.3**2 + 0.35**2 + 1.0)
    expect = np.array([200, 40, 10]) * (0.45 + 0.55 * cos)
    assert np.abs(front[32, 32] - expect).max() <= 1.5
    assert (front[0, 0] == 255).all()  # white background at the corner
    unlit = yaw_views(mesh, (0.0,), size=64, lit=False)
    assert np.abs(unlit[32, 32].astype(float) - [200, 40, 10]).max() <= 1.0
    # turned by 60 degrees the square is narrower: a smaller covered area than frontal
    turned = row[:, 128:].astype(float)
    covered = lambda im: int((np.abs(im - 255).sum(-1) > 30).sum())
    assert 0.35 < covered(turned) / covered(front) < 0.65  # cos 60° = 0.5 (perspective: near it)


def test_yaw_views_light_turns_with_the_mesh():
    """The shading normal turns with the mesh: the centre of the square turned by ±60° is lit by
    ``cos`` between the light and ``Ry(±60°) (0, 0, 1)``, computed here independently."""
    mesh = _square((250, 250, 250))
    light = np.array([-0.3, 0.35, 1.0]) / math.sqrt(0.3**2 + 0.35**2 + 1.0)
    for yaw in (-60.0, 60.0):
        y = math.radians(yaw)
        n = np.array([math.sin(y), 0.0, math.cos(y)])  # Ry(y) applied to +z
        expect = 250 * (0.45 + 0.55 * max(0.0, float(n @ light)))
        img = yaw_views(mesh, (yaw,), size=64).astype(float)
        assert abs(img[32, 32, 0] - expect) <= 2.0, (yaw, img[32, 32, 0], expect)
