"""Coarse-stage losses, shared by per-image fitting and regressor training (Deep3DFaceRecon style).

Every term is a plain function on batched tensors; :class:`CoarseLoss` combines them with the
weights in :class:`CoarseWeights` and returns the total plus each term separately for logging.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from facegcn.morphable.layout import Coefficients


@dataclass(frozen=True)
class CoarseWeights:
    """Deep3DFaceRecon's weights (landmarks in pixels at 224², colours in [0, 1]).

    For the ICT default the expression prior is weaker than BFM's (ARKit blendshape weights live in
    [0, 1] and are also box-constrained) and the albedo prior matches our N(0, 1) albedo space.
    """

    landmark: float = 1.6e-3
    photo: float = 1.92
    identity: float = 0.2
    reg: float = 3e-4
    reg_id: float = 1.0
    reg_exp: float = 0.8
    reg_tex: float = 1.7e-2
    gamma: float = 10.0
    reflectance: float = 5.0
    contour: float = 1.0  # relative weight of jaw-line landmarks 0–16 (they slide on the silhouette)


def landmark_weights(contour: float = 1.0, device=None) -> torch.Tensor:
    """Deep3DFaceRecon: weight 20 on the nose (28–30) and inner mouth (last 8); jaw-line scaled."""
    w = torch.ones(68, device=device)
    w[28:31] = 20.0
    w[-8:] = 20.0
    w[:17] = contour
    return w


def landmark_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weighted mean squared pixel distance, (B, 68, 2) each."""
    d = ((pred - target) ** 2).sum(-1)
    if weight is not None:
        d = d * weight
    return d.sum() / (pred.shape[0] * pred.shape[1])


def photo_loss(render: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Per-pixel Euclidean colour distance averaged over a (soft) mask; images (B, 3, H, W)."""
    d = torch.sqrt(eps + ((render - photo) ** 2).sum(1, keepdim=True)) * mask
    return d.sum() / mask.sum().clamp_min(1.0)


def photo_l2_loss(render: torch.Tensor, photo: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The paper's pixel loss: mean squared error over the mask (render mask ∩ face mask)."""
    d = ((render - photo) ** 2).sum(1, keepdim=True) * mask
    return d.sum() / (3.0 * mask.sum().clamp_min(1.0))


def identity_loss(feat_a: torch.Tensor, feat_b: torch.Tensor) -> torch.Tensor:
    """1 − cosine similarity of identity features, averaged over the batch."""
    return (1.0 - torch.nn.functional.cosine_similarity(feat_a, feat_b, dim=-1)).mean()


def coefficient_prior(c: Coefficients, w: CoarseWeights) -> torch.Tensor:
    B = c.id.shape[0]
    return (w.reg_id * (c.id**2).sum() + w.reg_exp * (c.exp**2).sum() + w.reg_tex * (c.tex**2).sum()) / B


def gamma_loss(sh: torch.Tensor) -> torch.Tensor:
    """Keep the SH light nearly monochromatic: variance of each band across R, G, B."""
    g = sh.view(-1, 3, 9)
    return ((g - g.mean(1, keepdim=True)) ** 2).mean()


def reflectance_loss(albedo: torch.Tensor, skin_weight: torch.Tensor) -> torch.Tensor:
    """Skin-colour variance: albedo should be uniform over the skin region; albedo (B, V, 3)."""
    m = skin_weight.view(1, -1, 1)
    mean = (albedo * m).sum(1, keepdim=True) / m.sum()
    return (((albedo - mean) * m) ** 2).sum() / (albedo.shape[0] * m.sum())


@dataclass
class LossTerms:
    total: torch.Tensor
    terms: dict[str, torch.Tensor]

    def scalars(self) -> dict[str, float]:
        return {"total": float(self.total.detach()), **{k: float(v.detach()) for k, v in self.terms.items()}}

    def detached(self) -> dict[str, torch.Tensor]:
        """:meth:`scalars` as detached 0-d tensors (no host sync; convert a whole log at once with
        :func:`history_floats`)."""
        return {"total": self.total.detach(), **{k: v.detach() for k, v in self.terms.items()}}


def history_floats(entries: list[dict]) -> list[dict]:
    """Replace the 0-d tensors in a loss log by floats with ONE device-to-host copy (an
    optimisation loop on a GPU that called ``float()`` every few steps would stall each time)."""
    keys = [(i, k) for i, e in enumerate(entries) for k, v in e.items() if isinstance(v, torch.Tensor)]
    if not keys:
        return entries
    vals = torch.stack([entries[i][k].reshape(()).float() for i, k in keys]).cpu().tolist()
    out = [dict(e) for e in entries]
    for (i, k), v in zip(keys, vals):
        out[i][k] = v
    return out


class CoarseLoss:
    """Weighted sum of the coarse terms. Missing inputs (e.g. no identity features) skip a term."""

    def __init__(self, weights: CoarseWeights | None = None, skin_weight: torch.Tensor | None = None):
        self.w = weights or CoarseWeights()
        self.skin_weight = skin_weight

    def as_dict(self) -> dict:
        return asdict(self.w)

    def __call__(
        self,
        coeffs: Coefficients,
        *,
        lm_pred: torch.Tensor | None = None,
        lm_target: torch.Tensor | None = None,
        render: torch.Tensor | None = None,
        photo: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        feat_render: torch.Tensor | None = None,
        feat_photo: torch.Tensor | None = None,
        albedo: torch.Tensor | None = None,
        use: set[str] | None = None,
    ) -> LossTerms:
        w = self.w
        terms: dict[str, torch.Tensor] = {}
        on = (lambda k: True) if use is None else (lambda k: k in use)  # noqa: E731
        if on("landmark") and lm_pred is not None and lm_target is not None:
            lw = landmark_weights(w.contour, lm_pred.device)
            terms["landmark"] = w.landmark * landmark_loss(lm_pred, lm_target, lw)
        if on("photo") and render is not None and photo is not None and mask is not None:
            terms["photo"] = w.photo * photo_loss(render, photo, mask)
        if on("identity") and feat_render is not None and feat_photo is not None:
            terms["identity"] = w.identity * identity_loss(feat_render, feat_photo)
        if on("reg"):
            terms["reg"] = w.reg * coefficient_prior(coeffs, w)
        if on("gamma"):
            terms["gamma"] = w.gamma * gamma_loss(coeffs.sh)
        if on("reflectance") and albedo is not None and self.skin_weight is not None:
            terms["reflectance"] = w.reflectance * reflectance_loss(albedo, self.skin_weight)
        total = sum(terms.values()) if terms else torch.zeros(())
        return LossTerms(total, terms)


def self_supervised_loss(
    coeffs_flat: torch.Tensor,
    synthesis,
    *,
    image: torch.Tensor,
    landmarks: torch.Tensor,
    face_mask: torch.Tensor,
    loss: "CoarseLoss",
    identity: torch.Tensor | None = None,
    chip_transform=None,
    embed_fn=None,
) -> LossTerms:
    """The regressor's training objective (Deep3DFaceRecon): the fitting losses evaluated on the
    network's predicted coefficients, rendered through the differentiable renderer."""
    from facegcn.render import DEFAULT_SH_INIT  # noqa: F401  (documented: sh is relative to it)

    c = synthesis.model.split(coeffs_flat)
    st = synthesis.state(c)
    r = synthesis.render(st)
    kw = dict(lm_pred=st.landmarks, lm_target=landmarks, render=r.image, photo=image,
              mask=r.mask * face_mask, albedo=st.albedo)
    if identity is not None and embed_fn is not None:
        kw["feat_render"] = embed_fn(r.image * r.mask + image * (1 - r.mask), chip_transform)
        kw["feat_photo"] = identity
    return loss(c, **kw)
