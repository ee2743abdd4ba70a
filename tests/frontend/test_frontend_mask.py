"""The face mask: landmark polygons + per-image skin colour model."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from facegcn.frontend import FrontendConfig, observe
from facegcn.frontend.mask import (
    BROWS,
    EYES,
    FACE_LABELS,
    FACIAL_HAIR,
    LandmarkSkinSegmenter,
    MOUTH,
    NOSE,
    PALETTE,
    SKIN,
    FaceSegmenter,
    Segmentation,
    SkinColourModel,
    save_label_png,
)


def _centroid(mask: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    return np.array([xs.mean(), ys.mean()])


def test_astronaut_regions_are_plausible(obs_dlib):
    from scipy.spatial import Delaunay

    lab = obs_dlib.labels.numpy()
    n = lab.size
    frac = {k: (lab == k).sum() / n for k in (SKIN, BROWS, EYES, NOSE, MOUTH)}
    assert 0.15 < frac[SKIN] < 0.5
    assert 0.005 < frac[BROWS] < 0.04
    assert 0.003 < frac[EYES] < 0.03
    assert 0.01 < frac[NOSE] < 0.06
    assert 0.01 < frac[MOUTH] < 0.06
    # eyes inside the face hull (jaw line + brows)
    hull = Delaunay(obs_dlib.landmarks[:27])
    ys, xs = np.nonzero(lab == EYES)
    assert (hull.find_simplex(np.stack([xs, ys], 1)) >= 0).mean() > 0.99
    c = {k: _centroid(lab == k) for k in (BROWS, EYES, NOSE, MOUTH)}
    assert c[BROWS][1] < c[EYES][1] < c[NOSE][1] < c[MOUTH][1]  # top to bottom
    assert abs(c[NOSE][0] - 112) < 15 and abs(c[MOUTH][0] - 112) < 15
    # two eyes, two brows: one left and one right of the nose
    for k in (EYES, BROWS):
        ys, xs = np.nonzero(lab == k)
        assert (xs < c[NOSE][0]).sum() > 20 and (xs > c[NOSE][0]).sum() > 20
    # the image corners (hair / background / suit) are not face
    assert not obs_dlib.face_mask[:20, :20].any() and not obs_dlib.face_mask[:20, -20:].any()
    assert torch.equal(obs_dlib.face_mask, torch.from_numpy(np.isin(lab, FACE_LABELS)))
    assert (lab == FACIAL_HAIR).mean() < 0.005  # no beard here: at most a few shadowed pixels
    w = obs_dlib.skin_weight
    assert w.min() >= 0 and w.max() <= 1
    assert w[obs_dlib.labels == SKIN].mean() > 0.7 and w[obs_dlib.labels == 0].mean() < 0.3


def _synthetic(skin_rgb, hair_rgb, seed=0):
    """A painted 'face': background, a shaded skin ellipse, hair over its top, glasses, a lip."""
    rng = np.random.default_rng(seed)
    h = w = 200
    yy, xx = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float64)
    img[:] = (70, 110, 160)  # blue-grey background
    img += np.linspace(-20, 20, w)[None, :, None]
    face = ((xx - 100) / 62.0) ** 2 + ((yy - 105) / 85.0) ** 2 <= 1
    shade = 0.8 + 0.4 * (xx / w)  # lighting from the right
    img[face] = np.asarray(skin_rgb, float) * shade[face][:, None]
    # freckles / blotches: low-frequency texture in the skin
    tex = np.cos(xx / 7.0) * np.sin(yy / 9.0) * 8.0
    img[face] += tex[face][:, None] * np.array([1.0, 0.8, 0.7])
    hair = face & (yy < 55 + 10 * np.sin(xx / 15.0))
    img[hair] = hair_rgb
    glasses = np.zeros_like(face)
    for cx in (75, 125):
        r = np.hypot(xx - cx, yy - 85)
        glasses |= (r > 14) & (r < 18)
    glasses |= (yy >= 83) & (yy <= 87) & (xx > 92) & (xx < 108)
    img[glasses] = (25, 25, 30)
    lip = ((xx - 100) / 20.0) ** 2 + ((yy - 150) / 7.0) ** 2 <= 1
    img[lip] = (170, 60, 70)
    img = np.clip(img + rng.normal(0, 5.0, img.shape), 0, 255).astype(np.uint8)
    skin = face & ~hair & ~glasses & ~lip
    cheeks = (np.hypot(xx - 70, yy - 120) < 12) | (np.hypot(xx - 130, yy - 120) < 12)
    return img, skin, cheeks


@pytest.mark.parametrize(
    "skin_rgb,hair_rgb",
    [
        ((215, 165, 135), (60, 40, 25)),  # light skin, dark hair
        ((120, 80, 55), (20, 15, 12)),  # dark skin, black hair
        ((235, 200, 180), (200, 160, 80)),  # pale skin, blond hair
        ((200, 150, 120), (115, 75, 50)),  # brown hair, not far from the shaded skin
    ],
)
def test_skin_model_recovers_painted_regions(skin_rgb, hair_rgb):
    img, skin, cheeks = _synthetic(skin_rgb, hair_rgb)
    model = SkinColourModel.fit(img, cheeks)
    pred = model.mask(img)
    iou = (pred & skin).sum() / (pred | skin).sum()
    assert iou >= 0.9, iou
    w = model.weight(img)
    assert w.dtype == np.float32 and w[skin].mean() > 0.8 and w[~skin].mean() < 0.15


def test_save_label_png(tmp_path, obs_dlib):
    p = save_label_png(tmp_path / "dbg" / "labels.png", obs_dlib.labels.numpy())
    arr = np.asarray(Image.open(p))
    lab = obs_dlib.labels.numpy()
    assert arr.shape == (224, 224, 3)
    for k in range(7):
        if (lab == k).any():
            assert (arr[lab == k] == PALETTE[k]).all()
    q = save_label_png(tmp_path / "overlay.png", lab, obs_dlib.image)
    ov = np.asarray(Image.open(q))
    assert ov.shape == (224, 224, 3) and (ov[lab == 0] == (obs_dlib.image.permute(1, 2, 0).numpy()[lab == 0] * 255).round().astype(np.uint8)).all()


def test_a_painted_beard_is_facial_hair_and_nothing_else_is(obs_dlib):
    from facegcn.frontend.mask import polygon_mask

    img = (obs_dlib.image.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
    lm = np.asarray(obs_dlib.landmarks, np.float64)
    shape = img.shape[:2]
    rng = np.random.default_rng(0)
    # a beard: the chin below the lower lip down to the jaw (landmarks 5..11 and 54..48)
    chin = polygon_mask(np.concatenate([lm[5:12], lm[[54, 55, 56, 57, 58, 59, 48]]]), shape)
    # dark patches where no beard grows: the forehead (above the nose base) and the neck (outside the outline)
    fore = polygon_mask(np.array([lm[19] + (0, -12), lm[24] + (0, -12), lm[24] + (0, -4), lm[19] + (0, -4)]), shape)
    neck = polygon_mask(np.array([lm[6] + (0, 12), lm[10] + (0, 12), lm[10] + (0, 30), lm[6] + (0, 30)]), shape)
    painted = img.copy()
    for m in (chin, fore, neck):
        painted[m] = np.clip(rng.normal((45, 35, 30), 8, (m.sum(), 3)), 0, 255).astype(np.uint8)
    lab = LandmarkSkinSegmenter().segment(painted, lm).labels
    beard = lab == FACIAL_HAIR
    assert beard[chin].mean() > 0.7
    assert not beard[fore].any() and not beard[neck].any()
    assert (lab[chin] == SKIN).mean() < 0.05
    # off: the same pixels stay unlabelled (background)
    off = LandmarkSkinSegmenter(facial_hair=False).segment(painted, lm).labels
    assert not (off == FACIAL_HAIR).any() and (off[chin] == 0).mean() > 0.7


class _EllipseSegmenter(FaceSegmenter):
    """A stand-in for a learned face-parsing net: everything inside an ellipse is skin."""

    def segment(self, image, landmarks, valid=None):
        h, w = image.shape[:2]
        yy, xx = np.mgrid[0:h, 0:w]
        inside = ((xx - w / 2) / (w / 3)) ** 2 + ((yy - h / 2) / (h / 2.5)) ** 2 <= 1
        return Segmentation(labels=inside.astype(np.int64), skin_weight=inside.astype(np.float32))


def test_segmenter_is_pluggable(astronaut_photo):
    o = observe(astronaut_photo, config=FrontendConfig(segmenter=_EllipseSegmenter(), identity=None))[0]
    assert set(torch.unique(o.labels).tolist()) == {0, 1}
    assert o.labels[112, 112] == 1 and o.labels[0, 0] == 0
    assert torch.isnan(o.identity).all()


def test_feature_regions_off_the_face_are_dropped():
    """attached(): a component of a feature region that touches no skin (a profile's far brow drawn
    in the background) goes; one touching the skin stays whole, even where it runs past it."""
    from facegcn.frontend.mask import attached

    near = np.zeros((40, 60), bool)
    near[10:30, 5:25] = True  # the skin, grown
    region = np.zeros_like(near)
    region[12:16, 20:35] = True  # a brow overlapping the skin's edge
    region[12:16, 45:55] = True  # a brow out in the background
    kept = attached(region, near)
    expected = np.zeros_like(near)
    expected[12:16, 20:35] = True
    np.testing.assert_array_equal(kept, expected)
    np.testing.assert_array_equal(attached(np.zeros_like(near), near), np.zeros_like(near))
    np.testing.assert_array_equal(attached(region, np.ones_like(near)), region)
