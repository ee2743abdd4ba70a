"""Image critic for WGAN-GP on 224 x 224 renders / photos (the authors' ``image_disc``).

Layout (authors): conv1x1 16 -> [max-pool 2, conv3x3] x 5 with 32, 64, 128, 256, 512 channels ->
conv7x7 "valid" -> 1 score. Each conv is followed by the normalisation and a leaky ReLU (0.2).
The authors used batch-norm; WGAN-GP's gradient penalty is per sample, so batch statistics are
wrong there: ``norm="layer"`` (default) is a LayerNorm over (C, H, W) with a per-channel affine
(``GroupNorm(1, C)``, which works for any image size), ``norm="none"`` has none.

Input: ``(B, 3, H, W)`` in [-1, 1] (channels first); output ``(B,)`` scores. At 224 x 224 the
final map is 1 x 1; other sizes are averaged over the remaining positions.
"""

from __future__ import annotations

import torch
from torch import nn

from facegcn.errors import ConfigError

__all__ = ["ImageCritic", "gradient_penalty"]


class _ConvNormAct(nn.Sequential):
    def __init__(self, cin: int, cout: int, kernel: int, norm: str, slope: float):
        layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel, padding=kernel // 2)]
        if norm == "layer":
            layers.append(nn.GroupNorm(1, cout))
        layers.append(nn.LeakyReLU(slope))
        super().__init__(*layers)


class ImageCritic(nn.Module):
    def __init__(self, in_channels: int = 3, widths=(16, 32, 64, 128, 256, 512), norm: str = "layer",
                 negative_slope: float = 0.2, final_kernel: int = 7):
        super().__init__()
        norm = str(norm).lower()
        if norm not in ("layer", "none"):
            raise ConfigError(f"critic norm must be 'layer' or 'none', got {norm!r} (no batch-norm with WGAN-GP)")
        widths = tuple(int(w) for w in widths)
        if len(widths) < 1:
            raise ConfigError("the critic needs at least one width")
        self.norm = norm
        layers: list[nn.Module] = [_ConvNormAct(in_channels, widths[0], 1, norm, negative_slope)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers.append(nn.MaxPool2d(2, 2))
            layers.append(_ConvNormAct(cin, cout, 3, norm, negative_slope))
        self.features = nn.Sequential(*layers)
        self.head = nn.Conv2d(widths[-1], 1, final_kernel)  # "valid"
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, a=negative_slope, nonlinearity="leaky_relu")
                nn.init.zeros_(m.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.dim() != 4:
            raise ValueError(f"expected (B, C, H, W) images, got {tuple(images.shape)}")
        score = self.head(self.features(images))
        return score.mean(dim=(1, 2, 3))


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP penalty ``weight * E[(||grad critic(x_hat)||_2 - 1)^2]`` at random interpolates
    (the authors use weight 10). Differentiable in the critic's parameters."""
    b = real.shape[0]
    eps = torch.rand(b, *([1] * (real.dim() - 1)), device=real.device, dtype=real.dtype)
    x_hat = (eps * real.detach() + (1 - eps) * fake.detach()).requires_grad_(True)
    score = critic(x_hat)
    (grad,) = torch.autograd.grad(score.sum(), x_hat, create_graph=True)
    norm = grad.flatten(1).norm(dim=1)
    return weight * ((norm - 1.0) ** 2).mean()
