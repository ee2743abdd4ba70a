"""Synthetic ground-truth scenes: the morphable model rendered with known coefficients, light and
a high-frequency texture over a procedural background (see CONTRIBUTING.md, "Synthetic benchmark",
for how a scene is made)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from scipy.ndimage import gaussian_filter, zoom
from scipy.spatial import cKDTree

from facegcn.frontend import FaceObservation
from facegcn.frontend.align import five_from_68
from facegcn.frontend.dense import face_spec, observe_dense
from facegcn.frontend.identity import IdentityEncoder, face_chip_transform
from facegcn.render import PerspectiveCamera, Renderer, sample_texture, sh_irradiance

TEXTURE_SIZE = 512
SUPERSAMPLE = 2
NOISE_SIGMA = 0.004

@dataclass
class SyntheticScene:
    seed: int
    coeffs: object  # Coefficients, batch 1
    image: torch.Tensor  # (3, 224, 224) in [0, 1], 8-bit quantised
    mask: torch.Tensor  # (224, 224) float 0/1, the rendered (binary) mask
    labels: torch.Tensor  # (224, 224) int64 region labels (0 background)
    skin_weight: torch.Tensor  # (224, 224) float
    landmarks: np.ndarray  # (68, 2) true projected landmarks
    albedo_true: torch.Tensor  # (V, 3) base × detail at the vertices
    albedo_base: torch.Tensor  # (V, 3) the low-frequency 3DMM albedo
    visible: torch.Tensor  # (V,) bool, visible in the image
    texture: torch.Tensor  # (3, S, S) the detail texture
    info: dict = field(default_factory=dict)


# ------------------------------------------------------------------------------ sampling
def _uniform(g: torch.Generator, shape, lo, hi) -> torch.Tensor:
    return torch.rand(shape, generator=g) * (hi - lo) + lo


def sample_coefficients(model, seed: int):
    """Known random identity / expression / albedo / pose / light (see the module docstring)."""
    L = model.layout
    g = torch.Generator().manual_seed(int(seed))
    c = L.split(torch.zeros(1, L.total))
    idc = torch.randn(1, L.id, generator=g) * 0.8
    if model.name == "ict":
        active = torch.rand(1, L.exp, generator=g) < 0.3
        exp = torch.where(active, torch.rand(1, L.exp, generator=g) * 0.6, torch.zeros(1, L.exp))
    else:
        exp = torch.randn(1, L.exp, generator=g) * 0.4
    tex = torch.randn(1, L.tex, generator=g) * 0.7
    angles = torch.stack([_uniform(g, (1,), -0.2, 0.2), _uniform(g, (1,), -0.45, 0.45),
                          _uniform(g, (1,), -0.12, 0.12)], -1)
    trans = torch.stack([_uniform(g, (1,), -0.1, 0.1), _uniform(g, (1,), -0.1, 0.1),
                         _uniform(g, (1,), -0.2, 0.2)], -1)
    sh = torch.zeros(1, 3, 9)
    dc = _uniform(g, (1,), -0.1, 0.15) + torch.randn(1, 3, generator=g) * 0.03  # (1,3): grey-ish + tint
    sh[:, :, 0] = dc
    direction = torch.nn.functional.normalize(torch.randn(1, 3, generator=g), dim=-1)
    mag = _uniform(g, (1, 1), 0.15, 0.4)
    tint = 1.0 + torch.randn(1, 3, 1, generator=g) * 0.05
    sh[:, :, 1:4] = (direction * mag)[:, None, :] * tint
    sh[:, :, 4:9] = torch.randn(1, 3, 5, generator=g) * 0.03
    return replace(c, id=idc, exp=exp, tex=tex, angles=angles, trans=trans, sh=sh.reshape(1, 27))


def uv_layout(model) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """(uv (T,2), uv_faces (F,3), vertex → uv index (V,)): the model's own UVs, or a planar
    projection of the mean shape (x, y) for models without UVs."""
    faces = model.faces.cpu().numpy()
    V = model.n_vertices
    if model.has_uv:
        uv = model.uv.detach().cpu().float()
        fuv = model.faces_uv.detach().cpu()
        v2uv = np.zeros(V, np.int64)
        v2uv[faces.reshape(-1)] = fuv.numpy().reshape(-1)
        return uv, fuv, v2uv
    xy = model.mean_shape.detach().cpu().numpy()[:, :2]
    lo, span = xy.min(0), float((xy.max(0) - xy.min(0)).max())
    uv = torch.as_tensor(0.05 + 0.9 * (xy - lo) / span, dtype=torch.float32)
    return uv, model.faces.detach().cpu(), np.arange(V)


def _beard_weight(model) -> np.ndarray:
    """(V,) in [0,1]: lower face under the nose base, mouth and nose excluded."""
    ms = model.mean_shape.detach().cpu().numpy()
    lm = ms[model.landmark_idx.cpu().numpy()]
    y0, y8 = lm[33, 1], lm[8, 1]  # nose base, chin
    w = np.clip((y0 - ms[:, 1]) / 0.08 + 0.25, 0.0, 1.0) * np.clip((ms[:, 1] - y8) / 0.1 + 1.0, 0.0, 1.0)
    w *= np.clip((ms[:, 2] - ms[:, 2].min()) / max(np.ptp(ms[:, 2]), 1e-6) * 3.0 - 0.6, 0.0, 1.0)  # front-facing side
    for name in ("mouth", "nose", "eyes"):
        if name in model.region_names:
            w[model.region(name).cpu().numpy()] = 0.0
    return w


def _paint_spots(detail: np.ndarray, centres_px: np.ndarray, radii: np.ndarray, strengths: np.ndarray,
                 tint: np.ndarray) -> None:
    S = detail.shape[1]
    for (x, y), r, s in zip(centres_px, radii, strengths, strict=True):
        h = int(math.ceil(3 * r))
        x0, x1 = max(int(x) - h, 0), min(int(x) + h + 1, S)
        y0, y1 = max(int(y) - h, 0), min(int(y) + h + 1, S)
        if x0 >= x1 or y0 >= y1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        p = np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * r * r))
        detail[:, y0:y1, x0:x1] *= 1.0 - s * p[None] * tint[:, None, None]


# Skin patches of skimage's astronaut (public domain, NASA; shipped with scikit-image): the cheeks,
# centred between dlib's jaw landmark 2 and nose landmark 31 and between 14 and 35 of that photo
# (x, y pixels; the photo's inter-ocular distance is 60 px), half-side 10 px.
SKIN_PATCHES = ((197, 129), (251, 131))
SKIN_HALF = 10


def photo_skin_detail(rng: np.random.Generator, size: int, texels_per_px: float = 2.0) -> np.ndarray:
    """``(S, S)`` multiplicative luminance detail (≈ 1) with a real photo's statistics: the
    high-pass (÷ its σ = 3 px Gaussian) of real cheek skin (:data:`SKIN_PATCHES`), resampled to
    ``texels_per_px`` and quilted over the map: random patches, flips and transposes, overlap-added
    with Hann windows in the log domain and normalised by ``√Σw²`` so the variance is the patches'."""
    from skimage import data

    lum = data.astronaut().astype(np.float64).mean(-1) + 1.0
    tiles = []
    for cx, cy in SKIN_PATCHES:
        big = lum[cy - 3 * SKIN_HALF:cy + 3 * SKIN_HALF, cx - 3 * SKIN_HALF:cx + 3 * SKIN_HALF]
        hp = np.log(big / gaussian_filter(big, 3.0))[2 * SKIN_HALF:4 * SKIN_HALF, 2 * SKIN_HALF:4 * SKIN_HALF]
        tiles.append(zoom(hp - hp.mean(), texels_per_px, order=1))
    t = tiles[0].shape[0]
    win = np.outer(np.hanning(t), np.hanning(t))
    step = t // 2
    acc = np.zeros((size + 2 * t, size + 2 * t))
    wsq = np.zeros_like(acc)
    for y in range(0, size + t, step):
        for x in range(0, size + t, step):
            tile = tiles[int(rng.integers(len(tiles)))]
            tile = np.rot90(tile, int(rng.integers(4)))
            if rng.random() < 0.5:
                tile = tile[:, ::-1]
            acc[y:y + t, x:x + t] += win * tile
            wsq[y:y + t, x:x + t] += win * win
    out = acc[t:t + size, t:t + size] / np.sqrt(np.maximum(wsq[t:t + size, t:t + size], 1e-6))
    return np.exp(out)


def _makeup(model, rng: np.random.Generator, S: int, uv_v: np.ndarray) -> np.ndarray:
    """``(3, S, S)`` multiplicative make-up: lipstick on the mouth region and eye shadow around the
    eyes, each with a random tint and strength (nearest vertex in UV, smoothed)."""
    lab = _vertex_labels(model).astype(np.float64)
    r, c = np.mgrid[0:S, 0:S]
    tex_uv = np.stack([(c.ravel() + 0.5) / S, 1.0 - (r.ravel() + 0.5) / S], -1)
    _, nn = cKDTree(uv_v).query(tex_uv)
    out = np.ones((3, S, S))
    for region, sigma, tints in ((5.0, 1.5, ([0.95, 0.55, 0.6], [0.8, 0.45, 0.55])), (3.0, 6.0, ([0.7, 0.6, 0.8], [0.75, 0.7, 0.6]))):
        w = gaussian_filter((lab[nn] == region).reshape(S, S).astype(np.float64), sigma * S / 512.0)
        w = np.clip(w * 1.5, 0.0, 1.0) * rng.uniform(0.5, 1.0)
        tint = np.asarray(tints[int(rng.integers(2))])[:, None, None]
        out *= 1.0 - w[None] * (1.0 - tint)
    return out


def procedural_texture(model, seed: int, size: int = TEXTURE_SIZE) -> torch.Tensor:
    """(3, S, S) multiplicative detail texture (≈ 1 on average) in the layout of :func:`uv_layout`
    (texel (r, c) ↔ uv ((c + .5)/S, 1 − (r + .5)/S), as :func:`facegcn.render.sample_texture`):
    real skin detail from a photo (:func:`photo_skin_detail`), multi-scale noise, freckles and
    moles, and for some seeds stubble and make-up (:func:`_makeup`)."""

    rng = np.random.default_rng(10_000 + int(seed))
    S = int(size)
    uv, _, v2uv = uv_layout(model)
    uv_v = uv.numpy()[v2uv]  # (V, 2)
    to_px = lambda p: np.stack([p[:, 0] * S - 0.5, (1.0 - p[:, 1]) * S - 0.5], -1)  # noqa: E731
    lum = np.zeros((S, S))
    for sigma, amp in ((0.7, 0.03), (2.0, 0.035), (5.0, 0.04)):
        n = gaussian_filter(rng.standard_normal((S, S)), sigma, mode="wrap")
        lum += amp * n / (n.std() + 1e-12)
    chroma = gaussian_filter(rng.standard_normal((3, S, S)), (0, 3, 3), mode="wrap")
    chroma = 0.02 * chroma / (chroma.std() + 1e-12)
    detail = (1.0 + lum)[None] * (1.0 + chroma) * photo_skin_detail(rng, S)[None]
    front = model.region("front").cpu().numpy() if "front" in model.region_names else np.arange(model.n_vertices)
    # freckles and moles, centred on random front vertices
    k = int(rng.integers(60, 201))
    c = to_px(uv_v[rng.choice(front, k)] + rng.normal(0, 0.004, (k, 2)))
    _paint_spots(detail, c, rng.uniform(2.0, 5.0, k), rng.uniform(0.15, 0.4, k), np.array([0.55, 0.75, 0.95]))
    k = int(rng.integers(3, 7))
    c = to_px(uv_v[rng.choice(front, k)])
    _paint_spots(detail, c, rng.uniform(4.0, 7.0, k), rng.uniform(0.5, 0.7, k), np.array([0.7, 0.85, 0.95]))
    if rng.random() < 0.5:  # stubble / beard
        bw = _beard_weight(model)
        r, cc = np.mgrid[0:S, 0:S]
        tex_uv = np.stack([(cc.ravel() + 0.5) / S, 1.0 - (r.ravel() + 0.5) / S], -1)
        _, nn = cKDTree(uv_v).query(tex_uv)
        wmap = gaussian_filter(bw[nn].reshape(S, S), 3.0)
        dots = gaussian_filter((rng.random((S, S)) < rng.uniform(0.15, 0.35)).astype(np.float64), 0.8)
        dots /= dots.max() + 1e-12
        dark = wmap * rng.uniform(0.5, 0.8) * (0.3 + 0.7 * dots)
        detail *= 1.0 - dark[None] * np.array([0.8, 0.85, 0.9])[:, None, None]
    if rng.random() < 0.5:  # make-up
        detail *= _makeup(model, rng, S, uv_v)
    return torch.as_tensor(np.clip(detail, 0.15, 1.4), dtype=torch.float32)


def procedural_background(seed: int, size: tuple[int, int]) -> torch.Tensor:
    """(3, H, W) in [0, 1]: smooth colour field + soft out-of-focus blobs + grain."""

    rng = np.random.default_rng(20_000 + int(seed))
    H, W = size
    import colorsys

    def muted() -> np.ndarray:  # random hue, low saturation, mid value
        return np.array(colorsys.hsv_to_rgb(rng.uniform(), rng.uniform(0.05, 0.4), rng.uniform(0.25, 0.85)))

    base = muted()
    grid = np.clip(base + rng.normal(0, 0.08, (4, 4, 3)) + rng.normal(0, 0.1, (4, 4, 1)), 0, 1)
    img = zoom(grid, (H / 4, W / 4, 1), order=3, mode="nearest")[:H, :W]
    yy, xx = np.mgrid[0:H, 0:W]
    for _ in range(int(rng.integers(4, 9))):
        cy, cx = rng.uniform(0, H), rng.uniform(0, W)
        r = rng.uniform(0.06, 0.25) * H
        a = rng.uniform(0.15, 0.45) / (1.0 + np.exp(((yy - cy) ** 2 + (xx - cx) ** 2) ** 0.5 / (0.08 * r) - 1.0 / 0.08))
        img = img * (1 - a[..., None]) + muted() * a[..., None]
    img = img + gaussian_filter(rng.normal(0, 0.03, (H, W, 3)), (0.7, 0.7, 0))
    return torch.as_tensor(np.clip(img, 0, 1), dtype=torch.float32).permute(2, 0, 1).contiguous()


def _vertex_labels(model) -> np.ndarray:
    lab = np.ones(model.n_vertices, np.int64)
    for name, v in (("brows", 2), ("eyes", 3), ("nose", 4), ("mouth", 5)):
        if name in model.region_names:
            lab[model.region(name).cpu().numpy()] = v
    return lab


def make_scene(model, syn, seed: int) -> SyntheticScene:
    """Render scene ``seed`` (deterministic) with the synthesis module's camera (CPU tensors)."""

    c = sample_coefficients(model, seed)
    dev = model.mean_shape.device
    cd = c.to(dev)
    cam = syn.camera
    ss = SUPERSAMPLE
    H, W = cam.height, cam.width
    cam_hi = PerspectiveCamera(focal=(cam.fx * ss, cam.fy * ss),
                               center=(cam.center[0] * ss + (ss - 1) / 2, cam.center[1] * ss + (ss - 1) / 2),
                               size=(H * ss, W * ss), distance=cam.distance, near=cam.near, far=cam.far)
    detail = procedural_texture(model, seed)
    uv, fuv, v2uv = uv_layout(model)
    with torch.no_grad():
        st = syn.state(cd)
        base = st.albedo[0].cpu()
        irr = sh_irradiance(st.normals, cd.sh)
        hi = Renderer(cam_hi, model.faces)
        r_col = hi(st.vertices, torch.cat([st.albedo, irr], -1))
        r_tex = hi(st.vertices, texture=detail[None].to(dev), uv=uv.to(dev), uv_faces=fuv.to(dev))
        face = (r_col.image[0, :3] * r_col.image[0, 3:6] * r_tex.image[0]).cpu()
        m_hi = r_col.mask[0].cpu()
        bg = procedural_background(seed, (H * ss, W * ss))
        img_hi = face.clamp(0, 1) * m_hi + bg * (1 - m_hi)
        img = torch.nn.functional.avg_pool2d(img_hi[None], ss)[0]
        g = torch.Generator().manual_seed(30_000 + int(seed))
        img = (img + torch.randn(img.shape, generator=g) * NOISE_SIGMA).clamp(0, 1)
        img = torch.round(img * 255) / 255
        # the 224² binary render: true mask, labels, visibility, landmarks
        r = syn.render(st)

        true_detail = sample_texture(detail, uv[v2uv][None])[0]  # (V, 3)
        albedo_true = (base * true_detail).clamp(0, 1)
        tri = r.tri_id[0].cpu()
        flab = torch.as_tensor(_vertex_labels(model)[model.faces.cpu().numpy()[:, 0]])
        labels = torch.where(tri >= 0, flab[tri.clamp_min(0)], torch.zeros_like(tri))
        skin = syn.renderer(st.vertices, model.skin_weight[None, :, None].expand(1, -1, 1).to(dev)).image[0, 0].cpu()
    yaw = float(c.angles[0, 1]) * 180 / math.pi
    return SyntheticScene(
        seed=int(seed), coeffs=c, image=img.contiguous(), mask=r.mask[0, 0].cpu(), labels=labels,
        skin_weight=(skin * r.mask[0, 0].cpu()).clamp(0, 1), landmarks=st.landmarks[0].cpu().double().numpy(),
        albedo_true=albedo_true, albedo_base=base.clamp(0, 1), visible=r.visibility[0].cpu(), texture=detail,
        info={"yaw_deg": yaw, "pitch_deg": float(c.angles[0, 0]) * 180 / math.pi,
              "roll_deg": float(c.angles[0, 2]) * 180 / math.pi})


def scene_observation(scene: SyntheticScene, encoder: IdentityEncoder | None = None) -> FaceObservation:
    """A :class:`FaceObservation` of the synthetic image in its own 224² frame (no detector)."""

    lm = np.asarray(scene.landmarks, np.float64)
    eye = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    chip_tf = face_chip_transform(lm[[45, 42, 36, 39, 33]])
    encoder = encoder if encoder is not None else IdentityEncoder()
    with torch.no_grad():
        ident = encoder.embed_aligned(scene.image[None], chip_tf)[0].float().cpu()
    p5 = five_from_68(lm)
    box = np.concatenate([lm.min(0), lm.max(0)])
    pixels = np.round(scene.image.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    dense = observe_dense(pixels, face_spec(box, p5[:2]))  # the photo is the aligned frame here
    return FaceObservation(
        dense=dense.points, dense_photo=dense.points, dense_score=dense.score, iris=dense.iris, iris_photo=dense.iris,
        head_pose=dense.pose_deg,
        image=scene.image, transform=eye, transform_inv=eye.copy(), landmarks=lm, landmarks_photo=lm.copy(),
        points5=p5, points5_photo=p5.copy(), box=box, score=1.0, detector_score=1.0, detector="synthetic",
        labels=scene.labels, skin_weight=scene.skin_weight, face_mask=scene.labels > 0, identity=ident,
        chip_transform=chip_tf, photo_size=(scene.image.shape[2], scene.image.shape[1]))


