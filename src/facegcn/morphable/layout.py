"""Coefficient layout: names → slices of the flat coefficient vector.

The paper's (Deep3DFaceRecon's) BFM layout is id 80 | exp 64 | tex 80 | angles 3 | sh 27 | trans 3
= 257. The layout is built from a model's dimensions, so the ICT default is
id 100 | exp 53 | tex 80 | angles 3 | sh 27 | trans 3 = 266.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

ORDER = ("id", "exp", "tex", "angles", "sh", "trans")


@dataclass(frozen=True)
class Coefficients:
    """Split coefficients, each (B, n). ``angles`` are radians (x, y, z); ``sh`` is (B, 27) = 9 bands
    for R, then G, then B; ``trans`` is in the model's unit (decimetres)."""

    id: torch.Tensor
    exp: torch.Tensor
    tex: torch.Tensor
    angles: torch.Tensor
    sh: torch.Tensor
    trans: torch.Tensor

    @property
    def batch_size(self) -> int:
        return self.id.shape[0]

    def detach(self) -> "Coefficients":
        return Coefficients(**{f.name: getattr(self, f.name).detach() for f in fields(self)})

    def to(self, *args, **kwargs) -> "Coefficients":
        return Coefficients(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})

    def as_dict(self) -> dict[str, list]:
        return {f.name: getattr(self, f.name).detach().cpu().tolist() for f in fields(self)}


@dataclass(frozen=True)
class CoeffLayout:
    id: int = 80
    exp: int = 64
    tex: int = 80
    angles: int = 3
    sh: int = 27
    trans: int = 3

    def __post_init__(self):
        if self.angles != 3 or self.sh != 27 or self.trans != 3:
            raise ValueError("angles, sh and trans must have sizes 3, 27 and 3")
        for name in ORDER:
            if getattr(self, name) < 0:
                raise ValueError(f"negative size for {name}")

    @property
    def sizes(self) -> dict[str, int]:
        return {n: getattr(self, n) for n in ORDER}

    @property
    def total(self) -> int:
        return sum(self.sizes.values())

    @property
    def slices(self) -> dict[str, slice]:
        out, start = {}, 0
        for n, k in self.sizes.items():
            out[n] = slice(start, start + k)
            start += k
        return out

    def split(self, coeffs: torch.Tensor) -> Coefficients:
        if coeffs.ndim != 2 or coeffs.shape[1] != self.total:
            raise ValueError(f"expected coefficients of shape (B, {self.total}), got {tuple(coeffs.shape)}")
        return Coefficients(**{n: coeffs[:, s] for n, s in self.slices.items()})

    def join(self, c: Coefficients) -> torch.Tensor:
        parts = []
        for n, k in self.sizes.items():
            t = getattr(c, n)
            if t.shape[-1] != k:
                raise ValueError(f"coefficient block {n!r} has size {t.shape[-1]}, layout expects {k}")
            parts.append(t)
        return torch.cat(parts, dim=1)

    def zeros(self, batch: int = 1, device=None, dtype=torch.float32) -> Coefficients:
        return self.split(torch.zeros(batch, self.total, device=device, dtype=dtype))


PAPER_LAYOUT = CoeffLayout()
