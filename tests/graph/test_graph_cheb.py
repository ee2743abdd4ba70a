"""ChebConv == torch_geometric.nn.ChebConv (outputs and gradients), Laplacian maths, sparse ops."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from facegcn.errors import ConfigError, InputError
from facegcn.graph import ChebConv, SparseMatrix, cheb_conv, edge_index, scaled_laplacian, spmm
from tests.graph.meshes import disk_mesh, sphere_mesh

pyg = pytest.importorskip("torch_geometric.nn")


def _pair(cin, cout, K, bias=True):
    ref = pyg.ChebConv(cin, cout, K, bias=bias)
    if bias:
        with torch.no_grad():
            ref.bias.normal_()
    return ref, ChebConv(cin, cout, K, bias=bias).load_torch_geometric(ref)


# Outputs and input gradients: absolute 1e-5. Weight / bias gradients are sums over B*V rows
# (up to ~19k in float32, accumulated in a different order), so they are compared relative to
# their largest entry at 5e-5 (measured worst case on the ICT face: 7e-6).
GRAD_W_RTOL = 5e-5


def _compare(ref, ours, x, L, ei, lambda_max=None):
    xa = x.clone().requires_grad_(True)
    xb = x.clone().requires_grad_(True)
    ya = ref(xa, ei, lambda_max=lambda_max)
    yb = ours(xb, L)
    g = torch.randn_like(ya)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    gw_ref = torch.stack([lin.weight.grad.t() for lin in ref.lins])
    scale_w = gw_ref.abs().max().item()
    errs = {
        "y": (ya - yb).abs().max().item(),
        "gx": (xa.grad - xb.grad).abs().max().item(),
        "gw": (gw_ref - ours.weight.grad).abs().max().item() / max(scale_w, 1e-12),
        "gb": 0.0 if ref.bias is None else
        (ref.bias.grad - ours.bias.grad).abs().max().item() / max(ref.bias.grad.abs().max().item(), 1e-12),
    }
    return errs


@pytest.mark.parametrize("mesh", ["sphere", "disk"])
@pytest.mark.parametrize("cin,cout,K", [(16, 16, 6), (7, 16, 6), (32, 3, 6), (6, 3, 3), (5, 4, 1), (3, 8, 2)])
def test_matches_torch_geometric_random_meshes(mesh, cin, cout, K, torch_seed):
    v, f = sphere_mesh(500, seed=1) if mesh == "sphere" else disk_mesh(600, seed=2)
    lap, lam = scaled_laplacian(f, len(v))
    assert lam == 2.0
    L = SparseMatrix(lap)
    ref, ours = _pair(cin, cout, K)
    x = torch.randn(3, len(v), cin)
    errs = _compare(ref, ours, x, L, edge_index(f))
    assert errs["y"] < 1e-5 and errs["gx"] < 1e-5, errs
    assert errs["gw"] < GRAD_W_RTOL and errs["gb"] < GRAD_W_RTOL, errs


def test_matches_torch_geometric_ict_face(ict_mesh, torch_seed):
    v, f = ict_mesh
    lap, _ = scaled_laplacian(f, len(v))
    L = SparseMatrix(lap)
    ei = edge_index(f)
    worst = {}
    for cin, cout in [(16, 16), (32, 3), (7, 16)]:
        ref, ours = _pair(cin, cout, 6)
        errs = _compare(ref, ours, torch.randn(2, len(v), cin), L, ei)
        for k, e in errs.items():
            worst[k] = max(worst.get(k, 0.0), e)
    print(f"ICT face ChebConv vs torch_geometric, max errors: {worst}")
    assert worst["y"] < 1e-5 and worst["gx"] < 1e-5, worst
    assert worst["gw"] < GRAD_W_RTOL and worst["gb"] < GRAD_W_RTOL, worst


def test_computed_lambda_max_matches_torch_geometric(torch_seed):
    v, f = disk_mesh(300, seed=3)
    lap, lam = scaled_laplacian(f, len(v), lambda_max="compute")
    assert 1.0 < lam <= 2.0 + 1e-9
    # against a dense eigen-decomposition of the sym-normalised Laplacian
    a = np.zeros((len(v), len(v)))
    for i, j in [(0, 1), (1, 2), (2, 0)]:
        a[f[:, i], f[:, j]] = a[f[:, j], f[:, i]] = 1
    d = 1 / np.sqrt(a.sum(1))
    dense = np.eye(len(v)) - d[:, None] * a * d[None, :]
    assert lam == pytest.approx(np.linalg.eigvalsh(dense).max(), rel=1e-6)
    ref, ours = _pair(8, 8, 6)
    errs = _compare(ref, ours, torch.randn(2, len(v), 8), SparseMatrix(lap), edge_index(f),
                    lambda_max=torch.tensor(lam, dtype=torch.float32))
    assert errs["y"] < 1e-5 and errs["gx"] < 1e-5 and errs["gw"] < GRAD_W_RTOL, errs


def test_unbatched_input_and_layout(torch_seed):
    v, f = sphere_mesh(200)
    L = SparseMatrix(scaled_laplacian(f, len(v))[0])
    conv = ChebConv(4, 5, 6)
    x = torch.randn(3, len(v), 4)
    y = conv(x, L)
    assert y.shape == (3, len(v), 5)
    y0 = conv(x[1], L)
    assert y0.shape == (len(v), 5)
    torch.testing.assert_close(y0, y[1], atol=1e-6, rtol=1e-5)
    # a contiguous copy of the input gives the same answer (layout independence)
    torch.testing.assert_close(conv(x.contiguous(), L), conv(x.transpose(0, 1).contiguous().transpose(0, 1), L))


@pytest.mark.parametrize("cin,cout", [(3, 5), (5, 2)])
def test_gradcheck_float64(cin, cout, torch_seed):
    v, f = disk_mesh(30, seed=4)
    L = SparseMatrix(scaled_laplacian(f, len(v))[0]).double()
    w = torch.randn(4, cin, cout, dtype=torch.float64, requires_grad=True)
    b = torch.randn(cout, dtype=torch.float64, requires_grad=True)
    x = torch.randn(2, len(v), cin, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w, b: cheb_conv(x, L, w, b), (x, w, b))


@pytest.mark.parametrize("cin,cout,K", [(7, 16, 6), (16, 16, 6), (32, 16, 6), (16, 3, 6), (3, 3, 6), (6, 3, 2),
                                         (4, 9, 1), (12, 3, 1)])
@pytest.mark.parametrize("batch", [1, 3])
def test_every_series_mode_matches_the_textbook_form(cin, cout, K, batch, torch_seed):
    """The three evaluation orders of cheb_conv (series_mode) against cheb_conv_reference (plain
    recurrence + autograd) in float64: outputs and all gradients to 1e-12; plus gradcheck."""
    from facegcn.graph.cheb_conv import cheb_conv_reference, series_mode

    assert series_mode(7, 16, 6) == "input" and series_mode(16, 16, 6) == "grad" and series_mode(16, 3, 6) == "output"
    v, f = sphere_mesh(120, seed=3)
    L = SparseMatrix(scaled_laplacian(f, len(v))[0]).double()
    w = torch.randn(K, cin, cout, dtype=torch.float64)
    b = torch.randn(cout, dtype=torch.float64)
    x = torch.randn(batch, len(v), cin, dtype=torch.float64)
    g = torch.randn(batch, len(v), cout, dtype=torch.float64)
    grads = []
    for fn in (cheb_conv, cheb_conv_reference):
        xs, ws, bs = (t.clone().requires_grad_(True) for t in (x, w, b))
        y = fn(xs, L, ws, bs)
        y.backward(g)
        grads.append((y.detach(), xs.grad, ws.grad, bs.grad))
    for a, r in zip(*grads):
        torch.testing.assert_close(a, r, rtol=1e-12, atol=1e-12)
    if batch == 1 and len(v) <= 200:
        xs, ws, bs = (t.clone().requires_grad_(True) for t in (x, w, b))
        assert torch.autograd.gradcheck(lambda x, w, b: cheb_conv(x, L, w, b), (xs, ws, bs))


def test_nonsymmetric_operator_gradient(torch_seed):
    rng = np.random.default_rng(0)
    m = sp.random(20, 20, density=0.2, random_state=1, format="csr") * 0.3
    op = SparseMatrix(m).double()
    assert not op.symmetric
    w = torch.randn(3, 2, 3, dtype=torch.float64, requires_grad=True)
    x = torch.tensor(rng.standard_normal((2, 20, 2)), requires_grad=True)
    assert torch.autograd.gradcheck(lambda x, w: cheb_conv(x, op, w), (x, w))
    # explicit dense reference of the series
    md = torch.tensor(m.toarray())
    t = [x, md @ x]
    t.append(2 * md @ t[1] - t[0])
    ref = sum(ti @ w[k] for k, ti in enumerate(t))
    torch.testing.assert_close(cheb_conv(x, op, w), ref)


def test_spmm_and_double_backward(torch_seed):
    m = sp.random(15, 10, density=0.3, random_state=2, format="csr")
    op = SparseMatrix(m).double()
    x = torch.randn(2, 10, 3, dtype=torch.float64, requires_grad=True)
    y = spmm(op, x)
    torch.testing.assert_close(y, torch.tensor(m.toarray()) @ x)
    assert torch.autograd.gradcheck(lambda x: op(x), (x,))
    assert torch.autograd.gradgradcheck(lambda x: op(x) ** 2, (x,))


def test_sparse_buffers_follow_module_and_stay_out_of_state_dict():
    v, f = sphere_mesh(100)
    L = SparseMatrix(scaled_laplacian(f, len(v))[0])
    assert {n for n, _ in L.named_buffers()} == {"crow", "col", "values"}
    assert L.state_dict() == {}
    L64 = L.double()
    assert L64.values.dtype == torch.float64 and L64.col.dtype == torch.int32
    np.testing.assert_allclose(L.to_scipy().toarray(), scaled_laplacian(f, len(v))[0].toarray())


@pytest.mark.gpu
def test_cuda_matches_cpu(torch_seed):
    v, f = sphere_mesh(300)
    L = SparseMatrix(scaled_laplacian(f, len(v))[0])
    conv = ChebConv(8, 8, 6)
    x = torch.randn(2, len(v), 8)
    y = conv(x, L)
    yc = conv.cuda()(x.cuda(), L.cuda())
    torch.testing.assert_close(yc.cpu(), y, atol=1e-5, rtol=1e-4)


def test_laplacian_properties_and_errors():
    v, f = disk_mesh(200, seed=5)
    lap, _ = scaled_laplacian(f, len(v))
    assert abs(lap - lap.T).max() == 0
    assert lap.diagonal().max() == 0  # lambda_max = 2: L_hat = -D^-1/2 A D^-1/2
    # an isolated vertex gets a zero row, as in torch_geometric
    lap_iso, _ = scaled_laplacian(f, len(v) + 1)
    assert lap_iso[len(v)].nnz == 0
    with pytest.raises(ConfigError):
        scaled_laplacian(f, len(v), lambda_max="largest")
    with pytest.raises(ConfigError):
        scaled_laplacian(f, len(v), lambda_max=-1.0)
    from facegcn.graph.laplacian import check_mesh

    with pytest.raises(InputError):
        check_mesh(v, f + len(v))
    with pytest.raises(InputError):
        check_mesh(v[:, :2], f)
    with pytest.raises(InputError):
        check_mesh(v, f.astype(np.float32))
