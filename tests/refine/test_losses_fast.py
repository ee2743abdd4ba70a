"""The refinement losses' fast forms against their textbook expressions (values and gradients)."""

from __future__ import annotations

import pytest
import torch

from facegcn.coarse.losses import LossTerms, history_floats
from facegcn.refine.losses import symmetry_loss


@pytest.mark.parametrize("B", [1, 3])
def test_symmetry_loss_matches_advanced_indexing(B):
    g = torch.Generator().manual_seed(0)
    c = torch.rand(B, 200, 3, generator=g, dtype=torch.float64)
    mirror = torch.randint(0, 200, (200,), generator=g)  # a nearest-vertex map: not a permutation
    a, b = c.clone().requires_grad_(True), c.clone().requires_grad_(True)
    la, lb = symmetry_loss(a, mirror), ((b - b[:, mirror]) ** 2).mean()
    torch.testing.assert_close(la, lb, rtol=1e-14, atol=0)
    la.backward()
    lb.backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-12, atol=1e-15)


def test_history_floats_equals_scalars():
    lt = LossTerms(torch.tensor(1.5), {"a": torch.tensor(0.25), "b": torch.tensor(2.0) * 3})
    log = [{"step": 0, **lt.detached()}, {"stage": "x", "step": 10, **lt.detached()}]
    assert history_floats(log) == [{"step": 0, **lt.scalars()}, {"stage": "x", "step": 10, **lt.scalars()}]
    assert history_floats([]) == []
