"""The face mask M_face (skin, brows, eyes, nose, mouth) without a face-parsing network.

:class:`LandmarkSkinSegmenter` rasterises region polygons from the 68 landmarks — brows, eyes, nose,
outer lips and the face outline (jaw line closed by a forehead arc above the brows) — and
intersects the outline with a per-image skin-colour model (:class:`SkinColourModel`, a Gaussian in
YCrCb fitted robustly on cheek samples) to drop hair, glasses frames, background and other
non-skin pixels. Nothing is downloaded.

Facial hair (beard, moustache) is the hair a face keeps: the pixels of the lower face (inside the
outline, below the nose base) that are not skin and darker than the skin model's mean
(:func:`facial_hair_mask`). It is labelled apart, outside :data:`FACE_LABELS`: the coarse fit and
the GCN's pixel loss see skin only (a beard is no skin albedo), while the exported texture takes
the photo there (a bearded face stays bearded; on 2 photos of a bearded man, dlib's distance of the
renders to his other photo 0.66 → 0.63 and the detail ratio 0.10 → 0.99 on the one with a full
beard, whose cheek patches are beard).

Label ids (:data:`LABELS`): 0 background, 1 skin, 2 brows, 3 eyes, 4 nose, 5 mouth, 6 facial hair.
``skin_weight`` is the soft skin likelihood in [0, 1] inside the face outline (0 outside).

Any other segmenter (e.g. a learned face-parsing net) plugs in by subclassing
:class:`FaceSegmenter` and returning a :class:`Segmentation` with the same label ids.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from pathlib import Path

import numpy as np

BACKGROUND, SKIN, BROWS, EYES, NOSE, MOUTH, FACIAL_HAIR = range(7)
LABELS = {BACKGROUND: "background", SKIN: "skin", BROWS: "brows", EYES: "eyes", NOSE: "nose", MOUTH: "mouth",
          FACIAL_HAIR: "facial hair"}
FACE_LABELS = (SKIN, BROWS, EYES, NOSE, MOUTH)  # the photometric losses' mask (facial hair is not skin)
PALETTE = np.array(
    [[0, 0, 0], [230, 180, 140], [120, 60, 20], [40, 120, 255], [60, 200, 60], [220, 30, 60], [160, 40, 200]],
    dtype=np.uint8,
)


@dataclass(frozen=True, eq=False)
class Segmentation:
    """``labels`` (H,W) int64 region ids; ``skin_weight`` (H,W) float32 in [0,1]."""

    labels: np.ndarray
    skin_weight: np.ndarray

    @property
    def face_mask(self) -> np.ndarray:
        return np.isin(self.labels, FACE_LABELS)


class FaceSegmenter(abc.ABC):
    """Interface: segment an aligned face image given its 68 landmarks (same pixel frame)."""

    @abc.abstractmethod
    def segment(self, image: np.ndarray, landmarks: np.ndarray, valid: np.ndarray | None = None) -> Segmentation:
        """``image``: (H,W,3) uint8 RGB; ``landmarks``: (68,2) (x,y) pixels; ``valid``: optional
        (H,W) bool, False where the image holds no photo content. Returns labels with the ids of
        :data:`LABELS` and a soft skin weight, both (H,W)."""


# ---- rasterisation ------------------------------------------------------------------------------

def polygon_mask(poly: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask of the pixels whose centres lie inside ``poly`` ((N,2) x,y)."""
    from skimage.draw import polygon as draw_polygon

    poly = np.asarray(poly, np.float64)
    m = np.zeros(shape, bool)
    rr, cc = draw_polygon(poly[:, 1], poly[:, 0], shape=shape)
    m[rr, cc] = True
    return m


def _shrink(poly: np.ndarray, factor: float) -> np.ndarray:
    c = poly.mean(0)
    return c + (poly - c) * factor


def face_frame(lm: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """(up unit vector, right unit vector, inter-ocular distance) of a 68-point face."""
    eye_l, eye_r = lm[36:42].mean(0), lm[42:48].mean(0)
    right = eye_r - eye_l
    iod = float(np.linalg.norm(right)) or 1.0
    right = right / iod
    up = np.array([right[1], -right[0]])  # image y points down
    return up, right, iod


def region_polygons(landmarks: np.ndarray) -> dict[str, list[np.ndarray]]:
    """Polygons (x,y) per region from 68 dlib landmarks: outline, brows, eyes, nose, mouth."""
    lm = np.asarray(landmarks, np.float64).reshape(68, 2)
    up, right, iod = face_frame(lm)
    # face outline: jaw 0..16 closed by a forehead arc raised above the brows
    chin_to_root = float(np.linalg.norm(lm[27] - lm[8]))
    brow = lm[17:27]
    centre_x = (lm[0] + lm[16]) / 2.0
    half_w = max(float(np.linalg.norm(lm[16] - lm[0])) / 2.0, 1e-6)
    arc = []
    for p in brow[::-1]:  # 26 .. 17 continues the jaw 0..16 polygon
        u = float(np.clip(np.dot(p - centre_x, right) / half_w, -1.0, 1.0))
        arc.append(p + up * (0.45 * chin_to_root * np.sqrt(max(0.0, 1.0 - 0.8 * u * u)) + 0.05 * iod))
    outline = np.concatenate([lm[0:17], np.array(arc)], axis=0)
    # brows: a band below the brow points
    thick = 0.13 * iod
    brows = []
    for idx in (slice(17, 22), slice(22, 27)):
        b = lm[idx]
        brows.append(np.concatenate([b + up * 0.03 * iod, (b - up * thick)[::-1]], axis=0))
    eyes = [_shrink(lm[36:42], 1.15), _shrink(lm[42:48], 1.15)]
    root_w = 0.12 * iod
    nose = np.array(
        [lm[27] - right * root_w, lm[31] - right * 0.08 * iod, lm[32], lm[33], lm[34], lm[35] + right * 0.08 * iod,
         lm[27] + right * root_w]
    )
    mouth = [_shrink(lm[48:60], 1.05)]
    return {"outline": [outline], "brows": brows, "eyes": eyes, "nose": [nose], "mouth": mouth}


def attached(region: np.ndarray, near: np.ndarray) -> np.ndarray:
    """The connected parts of ``region`` (bool (H, W)) that overlap ``near`` (the skin and nose
    grown by a few pixels). A feature polygon drawn from landmarks that sit off the face — the far
    brow and eye of a profile, placed by dlib's predictor in the background (seen on AFLW2000-3D
    images at 65-71° yaw) — touches no skin and is dropped; on a frontal face every brow, eye and
    mouth touches skin and stays."""
    from scipy import ndimage

    comp, n = ndimage.label(region)
    keep = np.zeros(n + 1, bool)  # keep[0], the outside of region, stays False
    keep[comp[region & near]] = True
    return keep[comp]


def cheek_sample_mask(landmarks: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bool mask of the two cheek patches (between lower eyelid, nose side, mouth corner and jaw)
    and the nose bridge, shrunk inward — the skin samples of :class:`SkinColourModel`."""
    lm = np.asarray(landmarks, np.float64).reshape(68, 2)
    left = np.array([lm[41], lm[40], lm[31], lm[48], lm[4], lm[2], lm[1]])
    rightc = np.array([lm[46], lm[47], lm[35], lm[54], lm[12], lm[14], lm[15]])
    bridge = np.array([lm[27], lm[39], lm[29], lm[42]])
    m = polygon_mask(_shrink(left, 0.6), shape) | polygon_mask(_shrink(rightc, 0.6), shape)
    return m | polygon_mask(_shrink(bridge, 0.5), shape)


def facial_hair_mask(image: np.ndarray, landmarks: np.ndarray, labels: np.ndarray, skin_luma: float,
                     valid: np.ndarray | None = None, darker: float = 0.85, inset: int = 3) -> np.ndarray:
    """Bool ``(H, W)``: beard and moustache pixels.

    Unlabelled pixels (not skin nor any region of ``labels``) inside the face outline shrunk by
    ``inset`` pixels, below the nose base (landmark 33, along the face's up direction), whose luma
    (ITU-R BT.601 Y, 0-255) is below ``darker × skin_luma``, the skin model's mean. Dark background
    or collar never qualify (outside the outline); a bright mask or scarf does not either.

    Args:
        image: ``(H, W, 3)`` uint8 RGB; landmarks ``(68, 2)`` in its pixels; labels ``(H, W)``.
        skin_luma: the skin's mean Y.
        valid: where the image holds photo content (default everywhere).
    """
    from scipy import ndimage

    lm = np.asarray(landmarks, np.float64).reshape(68, 2)
    shape = labels.shape
    up, _, _ = face_frame(lm)
    outline = polygon_mask(region_polygons(lm)["outline"][0], shape)
    if inset > 0:
        outline = ndimage.binary_erosion(outline, iterations=inset)
    ys, xs = np.mgrid[0:shape[0], 0:shape[1]]
    below = (xs - lm[33, 0]) * up[0] + (ys - lm[33, 1]) * up[1] < 0.0
    y = rgb_to_ycrcb(np.asarray(image))[..., 0]
    m = outline & below & (labels == BACKGROUND) & (y < darker * skin_luma)
    if valid is not None:
        m &= np.asarray(valid, bool)
    return ndimage.binary_opening(m, iterations=1)


# ---- skin colour ---------------------------------------------------------------------------------

def rgb_to_ycrcb(rgb: np.ndarray) -> np.ndarray:
    """ITU-R BT.601 full-range YCrCb (as OpenCV) of uint8 or 0..255 float RGB; float64 output."""
    x = np.asarray(rgb, np.float64)
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = 0.299 * r + 0.587 * g + 0.114 * b
    cr = (r - y) * 0.713 + 128.0
    cb = (b - y) * 0.564 + 128.0
    return np.stack([y, cr, cb], axis=-1)


@dataclass(frozen=True)
class SkinColourModel:
    """A Gaussian in YCrCb. Luma variance is inflated (``luma_scale``) so shading is tolerated.

    ``weight(img)`` = 1 / (1 + exp((d² - threshold) / softness)) with d² the Mahalanobis distance;
    binary skin is ``weight >= 0.5`` (d² below the χ²₃ 99 % quantile by default)."""

    mean: np.ndarray
    cov: np.ndarray
    threshold: float = 11.34
    softness: float = 1.5

    @classmethod
    def fit(cls, image: np.ndarray, sample_mask: np.ndarray, *, iterations: int = 3, luma_scale: float = 1.5,
            min_std: tuple[float, float, float] = (6.0, 2.0, 2.0)) -> SkinColourModel:
        """Fit on the pixels of ``image`` (H,W,3 RGB uint8) under ``sample_mask``; outliers beyond the
        threshold are dropped and the fit repeated (robust to a beard, a strand of hair, ...)."""
        px = rgb_to_ycrcb(np.asarray(image)[np.asarray(sample_mask, bool)])
        if len(px) < 10:
            raise ValueError("too few skin samples to fit a colour model")
        keep = np.ones(len(px), bool)
        model = None
        for _ in range(max(1, iterations)):
            sel = px[keep] if keep.sum() >= 10 else px
            mean = sel.mean(0)
            cov = np.cov(sel.T) + np.diag(np.square(min_std))
            cov[0, :] *= np.sqrt(luma_scale)
            cov[:, 0] *= np.sqrt(luma_scale)
            model = cls(mean=mean, cov=cov)
            keep = model.distance2(px, ycrcb=True) <= model.threshold
        assert model is not None
        return model

    def distance2(self, pixels: np.ndarray, *, ycrcb: bool = False) -> np.ndarray:
        x = np.asarray(pixels, np.float64) if ycrcb else rgb_to_ycrcb(pixels)
        d = x - self.mean
        inv = np.linalg.inv(self.cov)
        return np.einsum("...i,ij,...j->...", d, inv, d)

    def weight(self, image: np.ndarray) -> np.ndarray:
        d2 = self.distance2(image)
        z = np.clip((d2 - self.threshold) / self.softness, -50, 50)
        return (1.0 / (1.0 + np.exp(z))).astype(np.float32)

    def mask(self, image: np.ndarray) -> np.ndarray:
        return self.weight(image) >= 0.5


# ---- the default segmenter -------------------------------------------------------------------

class LandmarkSkinSegmenter(FaceSegmenter):
    """Landmark polygons + per-image skin colour (see the module docstring).

    Skin = face outline ∩ skin colour, cleaned by a small morphological opening/closing; nose =
    nose polygon ∩ (relaxed) skin colour; brows, eyes, mouth = their polygons (inside the image).
    ``valid`` (optional, (H,W) bool) marks pixels that hold photo content (False where the aligned
    crop ran past the photo's border)."""

    def __init__(self, nose_relax: float = 2.0, smooth: int = 1, facial_hair: bool = True):
        self.nose_relax = nose_relax
        self.smooth = smooth
        self.facial_hair = facial_hair

    def segment(self, image: np.ndarray, landmarks: np.ndarray, valid: np.ndarray | None = None) -> Segmentation:
        from scipy import ndimage

        img = np.asarray(image)
        if img.dtype != np.uint8:
            img = np.clip(np.rint(np.asarray(img, np.float64) * (255.0 if img.max() <= 1.0 else 1.0)), 0, 255)
            img = img.astype(np.uint8)
        shape = img.shape[:2]
        polys = region_polygons(landmarks)
        valid_m = np.ones(shape, bool) if valid is None else np.asarray(valid, bool)
        samples = cheek_sample_mask(landmarks, shape) & valid_m
        outline = polygon_mask(polys["outline"][0], shape) & valid_m
        if samples.sum() < 10:
            samples = outline
        labels = np.zeros(shape, np.int64)
        if samples.sum() < 10:
            return Segmentation(labels, np.zeros(shape, np.float32))
        model = SkinColourModel.fit(img, samples)
        weight = model.weight(img) * outline
        skin = weight >= 0.5
        if self.smooth:
            st = ndimage.generate_binary_structure(2, 1)
            skin = ndimage.binary_opening(skin, st, iterations=self.smooth)
            skin = ndimage.binary_closing(skin, st, iterations=self.smooth) & outline
        labels[skin] = SKIN
        relaxed = SkinColourModel(model.mean, model.cov, threshold=model.threshold * self.nose_relax)
        nose = polygon_mask(polys["nose"][0], shape) & valid_m & relaxed.mask(img)
        labels[nose] = NOSE
        near_face = ndimage.binary_dilation(labels > 0, iterations=3)
        for name, lab in (("brows", BROWS), ("eyes", EYES), ("mouth", MOUTH)):
            for poly in polys[name]:
                labels[attached(polygon_mask(poly, shape) & valid_m, near_face)] = lab
        if self.facial_hair:
            labels[facial_hair_mask(img, landmarks, labels, float(model.mean[0]), valid_m)] = FACIAL_HAIR
        return Segmentation(labels=labels, skin_weight=weight.astype(np.float32))


def colourise_labels(labels: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.55) -> np.ndarray:
    """(H,W,3) uint8 colour-coded label map, optionally blended over ``image`` (uint8 or [0,1] float,
    (H,W,3) or (3,H,W))."""
    lab = np.asarray(labels)
    colour = PALETTE[np.clip(lab, 0, len(PALETTE) - 1)]
    if image is None:
        return colour
    img = np.asarray(image.detach().cpu() if hasattr(image, "detach") else image)
    if img.ndim == 3 and img.shape[0] == 3 and img.shape[-1] != 3:
        img = np.moveaxis(img, 0, -1)
    if img.dtype != np.uint8:
        img = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    out = img.astype(np.float32)
    fg = lab > 0
    out[fg] = (1 - alpha) * out[fg] + alpha * colour[fg].astype(np.float32)
    return np.clip(np.rint(out), 0, 255).astype(np.uint8)


def save_label_png(path: str | Path, labels: np.ndarray, image: np.ndarray | None = None, alpha: float = 0.55) -> Path:
    """Write a colour-coded PNG of a label map (blended over ``image`` when given), atomically.
    Colours: skin tan, brows brown, eyes blue, nose green, mouth red, background black/image."""
    from facegcn.io.atomic import atomic_write_bytes
    from facegcn.io.imageops import encode_png

    return atomic_write_bytes(path, encode_png(colourise_labels(labels, image, alpha)))
