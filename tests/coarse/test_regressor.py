"""The ResNet coefficient regressor: shapes, a short self-supervised overfit, checkpoint round trip."""

import pytest
import torch

from facegcn.coarse.losses import CoarseLoss, CoarseWeights, self_supervised_loss
from facegcn.coarse.regressor import CoefficientRegressor
from facegcn.errors import ModelFileError
from tests.coarse.conftest import random_face


def test_resnet50_shapes_and_mean_face_init(ict):
    net = CoefficientRegressor(ict.layout, depth=50).eval()
    n_params = sum(p.numel() for p in net.parameters())
    assert 23.5e6 < n_params < 24.2e6  # ResNet-50 trunk (23.5 M) + 2048×266 head
    with torch.no_grad():
        out = net(torch.rand(2, 3, 224, 224))
    assert out.shape == (2, ict.layout.total)
    assert float(out.abs().max()) == 0.0  # zero-initialised head: predicts the mean face


@pytest.mark.slow
def test_short_overfit_reduces_self_supervised_loss_10x(ict, syn):
    torch.manual_seed(0)
    gt = random_face(ict, 11, batch=4)
    with torch.no_grad():
        st = syn.state(gt)
        r = syn.render(st, background=0.5)
    net = CoefficientRegressor(ict.layout, depth=14, width=16)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    loss = CoarseLoss(CoarseWeights(), ict.skin_weight)
    hist = []
    for _ in range(80):
        opt.zero_grad()
        lt = self_supervised_loss(net(r.image), syn, image=r.image, landmarks=st.landmarks,
                                  face_mask=r.mask, loss=loss)
        lt.total.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 5.0)
        opt.step()
        hist.append(float(lt.total))
    print(f"regressor overfit: {hist[0]:.4f} → {min(hist[-5:]):.4f}")
    assert hist[0] / min(hist[-5:]) >= 10


def test_checkpoint_round_trip_is_bit_exact(ict, tmp_path):
    net = CoefficientRegressor(ict.layout, depth=14, width=8)
    with torch.no_grad():
        for p in net.parameters():
            p.normal_()
    net.eval()
    p = net.save(tmp_path / "reg.safetensors")
    back = CoefficientRegressor.load(p).eval()
    for (k, a), (k2, b) in zip(net.state_dict().items(), back.state_dict().items()):
        assert k == k2 and torch.equal(a, b)
    x = torch.rand(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(net(x), back(x))
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError):
        CoefficientRegressor.load(tmp_path / "bad.safetensors")
