"""The paper's coarse CNN: a ResNet-50 that regresses 3DMM coefficients from an aligned 224² crop.

A compact definition of our own (torchvision cannot be installed beside the pinned CPU torch);
the architecture is the standard ResNet-50 (He et al. 2016, v1.5: stride in the 3×3 conv).
As in Deep3DFaceRecon, the final layer is zero-initialised so an untrained regressor predicts the
mean face, and the SH block is offset by the ambient initialisation at use time (see
:func:`facegcn.render.DEFAULT_SH_INIT`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facegcn.morphable.layout import CoeffLayout

# ImageNet statistics: the usual input normalisation for ResNets.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin: int, width: int, stride: int = 1):
        super().__init__()
        cout = width * self.expansion
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        nn.init.zeros_(self.bn3.weight)  # zero-init last BN of each block (Goyal et al.)
        self.relu = nn.ReLU(inplace=True)
        self.down = None
        if stride != 1 or cin != cout:
            self.down = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.down is None else self.down(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return self.relu(y + idt)


class ResNet(nn.Module):
    def __init__(self, layers=(3, 4, 6, 3), out_dim: int = 257, width: int = 64):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, width, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(3, stride=2, padding=1),
        )
        blocks, cin = [], width
        for i, n in enumerate(layers):
            w = width * 2**i
            for j in range(n):
                blocks.append(Bottleneck(cin, w, stride=2 if (j == 0 and i > 0) else 1))
                cin = w * Bottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, out_dim)
        self.feature_dim = cin
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


class CoefficientRegressor(nn.Module):
    """(B, 3, 224, 224) in [0, 1] → (B, layout.total) coefficients in the model's layout."""

    def __init__(self, layout: CoeffLayout, depth: int = 50, width: int = 64):
        super().__init__()
        layers = {18: None, 50: (3, 4, 6, 3), 26: (2, 2, 2, 2), 14: (1, 1, 1, 1)}.get(depth)
        if layers is None:
            raise ValueError(f"unsupported depth {depth}: choose 50 (paper), 26 or 14")
        self.layout = layout
        self.depth = depth
        self.net = ResNet(layers, layout.total, width)
        self.register_buffer("mean", torch.tensor(MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(STD).view(1, 3, 1, 1), persistent=False)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.net((image - self.mean) / self.std)

    def config(self) -> dict:
        return {"layout": self.layout.sizes, "depth": self.depth, "width": self.net.stem[0].out_channels}

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        from facegcn.train.checkpoint import save_module

        return save_module(path, self, {"kind": "regressor", "config": self.config(), **(extra or {})})

    @classmethod
    def load(cls, path: str | Path, map_location="cpu") -> "CoefficientRegressor":
        from facegcn.train.checkpoint import load_module_state

        from facegcn.errors import ModelFileError

        meta, state = load_module_state(path, expect_kind="regressor", map_location=map_location)
        if any(v.is_floating_point() and not torch.isfinite(v).all() for v in state.values()):
            raise ModelFileError(f"{path}: regressor checkpoint contains NaN or infinite weights")
        try:
            cfg = meta["config"]
            model = cls(CoeffLayout(**cfg["layout"]), depth=cfg["depth"], width=cfg["width"])
            model.load_state_dict(state)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise ModelFileError(f"{path}: not a usable regressor checkpoint ({type(exc).__name__})") from None
        return model
