"""The paper's coarse CNN: a ResNet-50 that regresses 3DMM coefficients from an aligned 224² crop.

The architecture is the standard ResNet-50 (He et al. 2016, v1.5: stride in the 3×3 conv). As in
Deep3DFaceRecon, the final layer is zero-initialised so an untrained regressor predicts the mean
face, and the SH block is offset by the ambient initialisation at use time (see
:func:`facegcn.render.DEFAULT_SH_INIT`). Weights are saved as ``kind = "regressor"`` safetensors
files (:mod:`facegcn.io.weights`).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from facegcn.errors import ModelFileError
from facegcn.io.weights import load_module_state, save_module
from facegcn.morphable.layout import CoeffLayout

# ImageNet statistics: the usual input normalisation for ResNets.
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


class Bottleneck(nn.Module):
    """ResNet v1.5 bottleneck block: 1×1 → 3×3 (stride) → 1×1 convolutions plus a shortcut.

    Args:
        cin: input channels.
        width: channels of the inner convolutions; the block outputs ``width * 4``.
        stride: stride of the 3×3 convolution (and of the projection shortcut).

    Shapes:
        input ``(B, cin, H, W)`` float → output ``(B, 4 width, H / stride, W / stride)``.
    """

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
    """Bottleneck ResNet with a linear head (zero-initialised: the output starts at 0).

    Args:
        layers: blocks per stage (``(3, 4, 6, 3)`` = ResNet-50).
        out_dim: outputs of the final linear layer.
        width: channels of the stem (stage ``i`` has inner width ``width * 2**i``).

    Shapes:
        input ``(B, 3, H, W)`` float (normalised) → output ``(B, out_dim)``.
    """

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
    """Aligned face crops → 3DMM coefficients in a morphable model's layout.

    Args:
        layout: the :class:`~facegcn.morphable.layout.CoeffLayout` of the output.
        depth: 50 (the paper), 26 or 14 (smaller ResNets for tests).
        width: stem channels of the ResNet (64 for the standard one).

    Shapes:
        input ``(B, 3, 224, 224)`` float RGB in ``[0, 1]`` (ImageNet normalisation is applied
        inside) → output ``(B, layout.total)`` float, flat coefficients (``layout.split`` them).
    """

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
        """Constructor options as JSON: ``{"layout": sizes, "depth": int, "width": int}``."""
        return {"layout": self.layout.sizes, "depth": self.depth, "width": self.net.stem[0].out_channels}

    def save(self, path: str | Path, extra: dict | None = None) -> Path:
        """Write the weights as a ``kind = "regressor"`` safetensors file (atomic).

        Args:
            path: the file to write.
            extra: more JSON metadata (e.g. ``{"trained": {...}}``).

        Returns:
            ``path`` as a :class:`~pathlib.Path`.
        """
        return save_module(path, self, {"kind": "regressor", "config": self.config(), **(extra or {})})

    @classmethod
    def load(cls, path: str | Path, map_location="cpu") -> "CoefficientRegressor":
        """Read a file written by :meth:`save`.

        Args:
            path: the safetensors file.
            map_location: device the weights are loaded onto.

        Returns:
            A new regressor with the saved layout, depth and width, in train mode and on the CPU
            (``map_location`` is where the file's tensors are read to; move the module yourself).

        Raises:
            ModelFileError: missing / corrupt file, another kind, non-finite weights, or weights
                that do not fit the saved configuration.
        """
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
