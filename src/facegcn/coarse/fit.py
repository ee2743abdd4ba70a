"""Per-image analysis-by-synthesis fitting of the 3DMM (the default coarse path; no weights needed).

Stages (each an Adam loop on the coefficient vector, Tikhonov priors throughout):

0. closed-form rigid initialisation from the 68 landmarks (scale → depth, centroid → x/y);
1. pose, then pose + identity + expression from the landmarks (jaw-line landmarks down-weighted:
   they slide along the silhouette);
2. + SH lighting and albedo with the masked photometric loss (render mask ∩ face mask);
3. + the identity loss (1 − cosine of dlib-ResNet features of the photo vs the render).
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field, replace

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from facegcn.coarse.losses import CoarseLoss, CoarseWeights, history_floats
from facegcn.coarse.optim import Adam
from facegcn.config import CoarseOptions
from facegcn.frontend.identity import IdentityEncoder, canonical_chip_transform, embed_aligned
from facegcn.coarse.synthesis import FaceState, FaceSynthesis
from facegcn.morphable import Coefficients, MorphableModel
from facegcn.render import Rendering


def _weights(o: CoarseOptions) -> CoarseWeights:
    return CoarseWeights(contour=o.contour_weight, identity=o.identity_weight, photo=o.photo_weight,
                         landmark=o.landmark_weight)


_D = CoarseOptions()  # the user-facing defaults (facegcn.config) are the single source


@dataclass(frozen=True)
class FitConfig:
    steps_rigid: int = _D.steps_rigid
    steps_landmark: int = _D.steps_landmark
    steps_photo: int = _D.steps_photo
    steps_identity: int = _D.steps_identity
    lr: float = _D.lr
    lr_rigid: float = _D.lr_rigid
    lr_photo: float | None = _D.lr_photo
    identity_every: int = _D.identity_every
    dense_weight: float = _D.dense_weight
    photo_coarse_steps: int = _D.photo_coarse_steps
    weights: CoarseWeights = field(default_factory=lambda: _weights(_D))
    progress: bool = False

    @classmethod
    def from_options(cls, o: CoarseOptions, progress: bool = False) -> "FitConfig":
        return cls(steps_rigid=o.steps_rigid, steps_landmark=o.steps_landmark, steps_photo=o.steps_photo,
                   steps_identity=o.steps_identity, lr=o.lr, lr_rigid=o.lr_rigid, lr_photo=o.lr_photo,
                   identity_every=o.identity_every, dense_weight=o.dense_weight,
                   photo_coarse_steps=o.photo_coarse_steps, weights=_weights(o),
                   progress=progress)


@dataclass
class CoarseResult:
    coeffs: Coefficients
    state: FaceState
    rendering: Rendering
    history: list[dict] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


def _init_rigid(syn: FaceSynthesis, c: Coefficients, lm: torch.Tensor) -> Coefficients:
    """Scale/centroid match of the mean face's projected landmarks to the target landmarks."""
    cam = syn.camera
    with torch.no_grad():
        p0 = syn.landmarks_only(c)
        m = syn.model
        z = (m.mean_shape[m.landmark_idx][:, 2]).mean()
        zc = cam.distance - (z + c.trans[:, 2])  # (B,)
        k = lm.std(dim=1).mean(-1) / p0.std(dim=1).mean(-1).clamp_min(1e-6)
        zc_new = zc / k
        tz = c.trans[:, 2] + (zc - zc_new)
        du = lm.mean(1) - p0.mean(1)
        tx = c.trans[:, 0] + du[:, 0] * zc_new / cam.fx
        ty = c.trans[:, 1] - du[:, 1] * zc_new / cam.fy
    return replace(c, trans=torch.stack([tx, ty, tz], -1))


class CoarseFitter:
    """Fits the coarse coefficients of one aligned face image (see the module docstring's stages).

    Args:
        model: the morphable model.
        config: step counts, learning rates and loss weights (default :class:`FitConfig`).
        synthesis: the forward model to fit through (default: a new one for ``model``).
        identity: the identity network for the identity stage (default: built on first use).
    """

    def __init__(self, model: MorphableModel, config: FitConfig | None = None, synthesis: FaceSynthesis | None = None,
                 identity: IdentityEncoder | None = None):
        self.model = model
        self.cfg = config or FitConfig()
        self.syn = synthesis or FaceSynthesis(model)
        self.loss = CoarseLoss(self.cfg.weights, model.skin_weight)
        self.identity = identity
        self.box_exp = model.name == "ict"  # ARKit blendshape weights are in [0, 1]

    def _project(self, x: torch.Tensor) -> None:
        if self.box_exp:
            s = self.model.layout.slices["exp"]
            with torch.no_grad():
                x[:, s].clamp_(0.0, 1.0)

    def fit(
        self,
        image: torch.Tensor,
        landmarks: torch.Tensor,
        face_mask: torch.Tensor,
        *,
        identity: torch.Tensor | None = None,
        chip_transform=None,
        init: Coefficients | None = None,
        dense: torch.Tensor | None = None,
        dense_weight: torch.Tensor | None = None,
    ) -> CoarseResult:
        """image (B,3,224,224) in [0,1]; landmarks (B,68,2) aligned pixels; face_mask (B,1,H,W);
        dense (B,468,2|3) MediaPipe's points in the aligned frame (optional: the dense term of
        :mod:`facegcn.coarse.dense`, weight ``config.dense_weight``) with per-point weights
        ``dense_weight`` (B,468) or (B,1) (e.g. the landmark score)."""
        cfg, m, L = self.cfg, self.model, self.model.layout
        B = image.shape[0]
        dev = image.device
        c0 = init if init is not None else L.zeros(B, device=dev)
        if init is None:
            c0 = _init_rigid(self.syn, c0, landmarks)
        x = L.join(c0).detach().clone().requires_grad_(True)
        if chip_transform is not None:  # on the device once, not copied there by every identity pass
            chip_transform = torch.as_tensor(chip_transform, dtype=image.dtype, device=dev)
        # a dense term whose every weight is 0 (a frontal face: the yaw ramp) adds 0 and a zero
        # gradient: not evaluated (the fit is the same to the bit; ~0.15 s of the landmark stages)
        weighted = dense_weight is None or bool((dense_weight > 0).any())
        term = self._dense_term() if dense is not None and cfg.dense_weight > 0 and weighted else None
        hist: list[dict] = []
        timings: dict[str, float] = {}
        sl = L.slices
        total = cfg.steps_rigid + cfg.steps_landmark + cfg.steps_photo + cfg.steps_identity
        bar = tqdm(total=total, desc="coarse fit", disable=not cfg.progress, leave=False)

        small = None  # the photometric stage's first steps at half resolution (coarse to fine)
        if cfg.photo_coarse_steps > 0 and cfg.steps_photo > 0:
            small = (self._half_synthesis(), F.avg_pool2d(image, 2), F.avg_pool2d(face_mask, 2))

        def run(stage: str, steps: int, free: list[str], use: set[str], lr: float):
            if steps <= 0:
                return
            t0 = time.perf_counter()
            opt = Adam([x], lr=lr, schedule=lambda i: 0.1 + 0.9 * 0.5 * (1 + math.cos(
                math.pi * min(i / max(steps - 1, 1), 1.0))))
            gmask = torch.zeros(L.total, device=dev)
            for k in free:
                gmask[sl[k]] = 1.0
            for it in range(steps):
                opt.zero_grad()
                c = L.split(x)
                kw: dict = {}
                if use == {"landmark", "reg"}:
                    kw["lm_pred"] = self.syn.landmarks_only(c)
                    kw["lm_target"] = landmarks
                else:
                    st = self.syn.state(c)
                    syn, img, fm = (small if stage == "photo" and small is not None and it < cfg.photo_coarse_steps
                                    else (self.syn, image, face_mask))
                    r = syn.render(st)
                    kw.update(lm_pred=st.landmarks, lm_target=landmarks, render=r.image, photo=img,
                              mask=r.mask * fm, albedo=st.albedo)
                    if "identity" in use and identity is not None and it % cfg.identity_every == 0:
                        kw["feat_render"] = self._embed(r.image * r.mask + image * (1 - r.mask), chip_transform)
                        kw["feat_photo"] = identity
                lt = self.loss(c, use=use, **kw)
                total = lt.total
                if term is not None:
                    d = (term(c, dense, dense_weight) if "lm_pred" in kw and "render" not in kw else
                         term(vertices=st.vertices, normals=st.normals, target=dense, target_weight=dense_weight))
                    lt.terms["dense"] = cfg.dense_weight * d
                    total = total + lt.terms["dense"]
                    lt.total = total
                total.backward()
                x.grad.mul_(gmask)
                opt.step()
                self._project(x)
                if it % 10 == 0 or it == steps - 1:
                    hist.append({"stage": stage, "step": it, **lt.detached()})
                bar.update(1)
            timings[stage] = time.perf_counter() - t0

        run("rigid", cfg.steps_rigid, ["angles", "trans"], {"landmark", "reg"}, cfg.lr_rigid)
        run("landmark", cfg.steps_landmark, ["angles", "trans", "id", "exp"], {"landmark", "reg"}, cfg.lr)
        all_ = ["angles", "trans", "id", "exp", "tex", "sh"]
        photo = {"landmark", "photo", "reg", "gamma", "reflectance"}
        run("photo", cfg.steps_photo, all_, photo, cfg.lr if cfg.lr_photo is None else cfg.lr_photo)
        if identity is not None and cfg.steps_identity > 0:
            run("identity", cfg.steps_identity, all_, photo | {"identity"}, cfg.lr * 0.5)
        bar.close()
        with torch.no_grad():
            c = L.split(x.detach())
            st = self.syn.state(c)
            r = self.syn.render(st)
        return CoarseResult(c, st, r, history_floats(hist), timings)

    def _half_synthesis(self) -> FaceSynthesis:
        """The forward model at half resolution (cached; :meth:`FaceSynthesis.downscaled`)."""
        if getattr(self, "_half", None) is None:
            self._half = self.syn.downscaled(2)
        return self._half

    def _dense_term(self):
        """The dense-landmark term of this model (cached), or None when the model has no
        correspondence file (e.g. a BFM the derivation script was not run for)."""
        if not hasattr(self, "_dense"):
            from facegcn.coarse.dense import DenseLandmarkTerm
            from facegcn.errors import ModelFileError

            try:
                self._dense = DenseLandmarkTerm(self.model, self.syn.camera).to(self.model.mean_shape.device)
            except ModelFileError:
                self._dense = None
        return self._dense

    def _embed(self, img: torch.Tensor, chip_transform) -> torch.Tensor:
        if self.identity is None:
            self.identity = IdentityEncoder(device=img.device)
        ct = chip_transform if chip_transform is not None else canonical_chip_transform()
        return embed_aligned(img.clamp(0, 1), ct, loop_identity_net(self.identity))


class _ChannelsLast(torch.nn.Module):
    """A network evaluated on channels-last (NHWC) tensors, same weights, same results up to float
    rounding (descriptors within 2e-7): the dlib ResNet's forward + backward on a 150² chip takes
    ~20% less time this way on a CPU (measured 34 vs 42 ms, 1 thread)."""

    def __init__(self, net: torch.nn.Module):
        super().__init__()
        self.net = copy.deepcopy(net).to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.contiguous(memory_format=torch.channels_last))


def loop_identity_net(encoder: IdentityEncoder) -> torch.nn.Module:
    """The identity network to call in optimisation loops: on a CPU a channels-last copy, made
    once per encoder (the shared network itself is left as it is), elsewhere the network."""
    net = encoder.net
    if encoder.device.type != "cpu":
        return net
    cached = _LOOP_NETS.get(id(net))
    if cached is None or cached[0] is not net:
        cached = _LOOP_NETS[id(net)] = (net, _ChannelsLast(net).eval())
    return cached[1]


_LOOP_NETS: dict[int, tuple[torch.nn.Module, torch.nn.Module]] = {}  # the shared networks are few
