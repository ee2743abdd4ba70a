"""facegcn.coarse.optim.Adam against its reference, torch.optim.Adam (+ LambdaLR, clip_grad_norm_)."""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch

from facegcn.coarse.optim import Adam


def _problem(seed: int):
    g = torch.Generator().manual_seed(seed)
    shapes = [(7, 5), (5,), (3, 4, 2), (1,)]
    params = [torch.randn(s, generator=g) for s in shapes]
    targets = [torch.randn(s, generator=g) for s in shapes]
    return params, targets


def _loss(ps, ts, it):
    # a different quartic bowl every step, so moments and bias corrections all matter
    return sum(((p - t * math.cos(it)) ** 2).sum() + 0.1 * (p**4).sum() for p, t in zip(ps, ts))


@pytest.mark.parametrize("clip", [None, 0.5])
def test_adam_matches_torch(clip):
    p0, ts = _problem(0)
    a = [p.clone().requires_grad_(True) for p in p0]
    b = [p.clone().requires_grad_(True) for p in p0]
    sched = lambda i: 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(i / 19, 1.0)))  # noqa: E731
    ours = Adam(a, lr=0.05, schedule=sched)
    ref = torch.optim.Adam(b, lr=0.05)
    ref_sched = torch.optim.lr_scheduler.LambdaLR(ref, sched)
    for it in range(25):
        ours.zero_grad()
        ref.zero_grad(set_to_none=True)
        _loss(a, ts, it).backward()
        _loss(b, ts, it).backward()
        if clip is not None:
            n1 = ours.clip_grad_norm_(clip)
            n2 = torch.nn.utils.clip_grad_norm_(b, clip)
            torch.testing.assert_close(n1, n2, rtol=1e-6, atol=0)
        ours.step()
        ref.step()
        ref_sched.step()
        for x, y in zip(a, b):
            torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_adam_skips_parameters_without_gradient():
    p0, ts = _problem(1)
    a = [p.clone().requires_grad_(True) for p in p0]
    b = [p.clone().requires_grad_(True) for p in p0]
    ours, ref = Adam(a, lr=0.1), torch.optim.Adam(b, lr=0.1)
    for it in range(6):
        ours.zero_grad()
        ref.zero_grad(set_to_none=True)
        use = slice(0, 2) if it % 2 else slice(None)  # the last two tensors get a gradient every other step
        _loss(a[use], ts[use], it).backward()
        _loss(b[use], ts[use], it).backward()
        ours.step()
        ref.step()
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y, rtol=0, atol=0)


def test_adam_does_not_import_dynamo():
    """The point of the class: the first optimizer of a process costs no torch._dynamo import."""
    code = ("import sys, torch\nfrom facegcn.coarse.optim import Adam\n"
            "x = torch.zeros(3, requires_grad=True)\nopt = Adam([x], lr=0.1)\n"
            "(x - 1).pow(2).sum().backward()\nopt.clip_grad_norm_(1.0)\nopt.step()\n"
            "print('torch._dynamo' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_loop_identity_net_matches_the_shared_network():
    """The channels-last copy used in the optimisation loops gives the network's descriptors and
    input gradients (float rounding only) and leaves the shared network untouched."""
    from facegcn.coarse.fit import loop_identity_net
    from facegcn.frontend.identity import IdentityEncoder, canonical_chip_transform, embed_aligned

    enc = IdentityEncoder()
    net = loop_identity_net(enc)
    assert net is loop_identity_net(IdentityEncoder())  # one copy per shared network
    assert next(enc.net.parameters()).is_contiguous()  # the shared one keeps its layout
    ct = canonical_chip_transform()
    img = torch.rand(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    a, b = img.clone().requires_grad_(True), img.clone().requires_grad_(True)
    fa, fb = embed_aligned(a, ct, net), embed_aligned(b, ct, enc.net)
    torch.testing.assert_close(fa, fb, rtol=1e-5, atol=1e-6)
    fa.sum().backward()
    fb.sum().backward()
    torch.testing.assert_close(a.grad, b.grad, rtol=1e-4, atol=1e-7)
