"""BranchLanes: the generator's decoder and refiner on two threads give the sequential
generator's output (bitwise: each branch runs the same ops in the same order) and its gradients
(up to float rounding: the autograd engine sums the same terms in another order)."""

import pytest
import torch

from facegcn.graph import TextureGenerator
from facegcn.morphable import load_model
from facegcn.refine.lanes import BranchLanes
from facegcn.refine.per_image import model_hierarchy


@pytest.fixture(scope="module")
def generator():
    torch.manual_seed(0)
    return TextureGenerator(model_hierarchy(load_model("ict")))


def _grads(gen):
    return [p.grad.detach().clone() for p in gen.parameters()]


def test_lanes_match_the_sequential_generator(generator):
    gen = generator
    z = torch.randn(2, 128)
    x = torch.randn(2, gen.ops.sizes[0], 7)
    target = torch.randn(2, gen.ops.sizes[0], 3)

    def loss(out):
        return ((out - target) ** 2).sum()

    gen.zero_grad()
    ref_out = gen(z, x)
    loss(ref_out).backward()
    ref_grads = _grads(gen)
    with BranchLanes(gen) as lanes:
        for _ in range(2):  # twice: the worker thread and the leaves are reused correctly
            gen.zero_grad()
            out = lanes.forward(z, x)
            torch.testing.assert_close(out, ref_out, rtol=0, atol=0)
            loss(out).backward()
            lanes.backward()
            for g, r in zip(_grads(gen), ref_grads):
                torch.testing.assert_close(g, r, rtol=1e-4, atol=1e-5 * float(r.abs().max()))
        with torch.no_grad():  # no grad: the plain output, nothing kept
            torch.testing.assert_close(lanes.forward(z, x), ref_out, rtol=0, atol=0)
        with pytest.raises(RuntimeError):
            lanes.backward()
    # each branch really got its share: a parameter of the decoder and of the refiner moved
    assert float(ref_grads[0].abs().sum()) > 0
    assert any(float(p.grad.abs().sum()) > 0 for p in gen.refiner.parameters())
