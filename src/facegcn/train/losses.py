"""Training objectives built on the coarse / refinement losses, made exact under data parallelism.

Every term of :class:`~facegcn.coarse.losses.CoarseLoss` and
:func:`~facegcn.refine.losses.refine_objective` is a per-sample mean — except the masked photo /
pixel terms, which divide by the mask area of the *whole batch*. Here that area is summed over
all ranks, so the average of the ranks' gradients equals the gradient on the joint batch; in one
process the terms equal the originals.
"""

from __future__ import annotations

import torch

from facegcn.coarse.losses import CoarseLoss, CoarseWeights, LossTerms
from facegcn.refine.losses import RefineLossTerms, RefineWeights, refine_objective, vertex_weights

ALL_COARSE_TERMS = frozenset({"landmark", "photo", "identity", "reg", "gamma", "reflectance"})


def full(x: torch.Tensor) -> torch.Tensor:
    """Half-precision (autocast) outputs → float32; float32 / float64 stay as they are."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


class _Norm:
    """Global mask area for one batch (sum over ranks), as a local-equivalent denominator."""

    def __init__(self, ctx=None):
        self.ctx = ctx

    def denominator(self, mask_sum: torch.Tensor) -> torch.Tensor:
        if self.ctx is None or not self.ctx.distributed:
            return mask_sum.detach().clamp_min(1.0)
        total = self.ctx.all_reduce_sum(mask_sum.detach().reshape(1))[0]
        return total.clamp_min(1.0) / self.ctx.world_size


class DistCoarseLoss(CoarseLoss):
    """:class:`CoarseLoss` whose photo term is normalised by the mask area over all ranks."""

    def __init__(self, weights: CoarseWeights | None = None, skin_weight: torch.Tensor | None = None, ctx=None):
        super().__init__(weights, skin_weight)
        self.norm = _Norm(ctx)

    def __call__(self, coeffs, *, use=None, render=None, photo=None, mask=None, **kw) -> LossTerms:
        use = ALL_COARSE_TERMS if use is None else set(use)
        lt = super().__call__(coeffs, use=use - {"photo"}, **kw)
        terms = dict(lt.terms)
        if "photo" in use and render is not None and photo is not None and mask is not None:
            d = torch.sqrt(1e-6 + ((render - photo) ** 2).sum(1, keepdim=True)) * mask
            terms = {"photo": self.w.photo * d.sum() / self.norm.denominator(mask.sum()), **terms}
        total = sum(terms.values()) if terms else torch.zeros(())
        return LossTerms(total, terms)


def texture_objective(
    w: RefineWeights,
    *,
    colors: torch.Tensor,
    reference: torch.Tensor,
    render: torch.Tensor,
    photo: torch.Tensor,
    render_mask: torch.Tensor,
    face_mask: torch.Tensor,
    epoch: float,
    critic_input: torch.Tensor | None = None,
    critic=None,
    ctx=None,
    **kw,
) -> RefineLossTerms:
    """:func:`refine_objective` with (a) the pixel term normalised over all ranks and (b) the
    adversarial term evaluated on ``critic_input`` (the render composited over the photo, in
    [-1, 1] — what the critic is trained on) instead of the raw render."""
    lt = refine_objective(w, colors=colors, reference=reference, render=render, photo=photo,
                          render_mask=render_mask, face_mask=face_mask, epoch=epoch, critic=None, **kw)
    ren, _ = vertex_weights(epoch)
    t = dict(lt.terms)
    m = render_mask * face_mask
    d = ((render - photo) ** 2).sum(1, keepdim=True) * m
    t["pixel"] = ren * w.pixel * d.sum() / (3.0 * _Norm(ctx).denominator(m.sum()))
    if critic is not None and critic_input is not None and w.adversarial > 0:
        t["adversarial"] = ren * w.adversarial * (-full(critic(critic_input)).mean())
    return RefineLossTerms(sum(t.values()), t)


def critic_objective(critic, real: torch.Tensor, fake: torch.Tensor, eps: torch.Tensor,
                     gp_lambda: float = 10.0) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """WGAN-GP critic loss ``D(fake) − D(real) + λ·E[(‖∇D(x̂)‖ − 1)²]`` with the interpolation
    weights ``eps`` (B,) given by the caller (deterministic per sample and step)."""
    d_real = full(critic(real)).mean()
    d_fake = full(critic(fake.detach())).mean()
    e = eps.to(real.dtype).view(-1, *([1] * (real.dim() - 1)))
    x = (e * real.detach() + (1 - e) * fake.detach()).requires_grad_(True)
    out = full(critic(x))
    (grad,) = torch.autograd.grad(out.sum(), x, create_graph=True)
    gp = ((grad.flatten(1).norm(dim=1) - 1.0) ** 2).mean()
    loss = d_fake - d_real + gp_lambda * gp
    return loss, {"critic_wdist": (d_real - d_fake).detach(), "critic_gp": gp.detach()}
