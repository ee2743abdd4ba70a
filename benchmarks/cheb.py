"""Benchmark: facegcn ChebConv vs torch_geometric ChebConv, forward + backward.

A 189 x 189 triangulated grid (35,721 vertices, about the 35,709 of the BFM face), batch 4,
16 -> 16 channels, K = 6, float32, CPU threads as torch sets them (or ``--threads``). Both layers get
the same weights; their outputs are checked to agree before timing. torch_geometric is timed in
both of its batching styles — ``(B, V, C)`` with ``node_dim=-2`` and a disjoint batch graph of
``B * V`` nodes — and the faster one is the baseline. Runs are interleaved and the best of
``--repeat`` is kept, which keeps the comparison fair on a busy machine.

    python benchmarks/cheb.py [--repeat 7] [--threads N] [--device cpu|cuda]

The last line printed is the speed ratio (torch_geometric time / facegcn time).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch


def grid_mesh(n: int = 189) -> tuple[np.ndarray, np.ndarray]:
    ii, jj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    idx = ii * n + jj
    a, b, c, d = idx[:-1, :-1].ravel(), idx[1:, :-1].ravel(), idx[1:, 1:].ravel(), idx[:-1, 1:].ravel()
    faces = np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])
    verts = np.stack([ii.ravel() / (n - 1), jj.ravel() / (n - 1), np.zeros(n * n)], 1)
    return verts, faces


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _time(fn, device) -> float:
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def run(n: int = 189, batch: int = 4, channels: int = 16, K: int = 6, repeat: int = 7,
        device: str = "cpu", seed: int = 0) -> dict:
    from torch_geometric.nn import ChebConv as PygChebConv

    from facegcn.graph import ChebConv, SparseMatrix, edge_index, scaled_laplacian

    dev = torch.device(device)
    torch.manual_seed(seed)
    verts, faces = grid_mesh(n)
    V = len(verts)
    lap, _ = scaled_laplacian(faces, V)
    L = SparseMatrix(lap, symmetric=True).to(dev)
    ei = edge_index(faces).to(dev)
    ei_disjoint = torch.cat([ei + b * V for b in range(batch)], dim=1)

    ref = PygChebConv(channels, channels, K).to(dev)
    with torch.no_grad():
        ref.bias.normal_()
    ours = ChebConv(channels, channels, K).to(dev).load_torch_geometric(ref)

    x = torch.randn(batch, V, channels, device=dev)
    g = torch.randn(batch, V, channels, device=dev)

    def step_ours():
        xi = x.detach().requires_grad_(True)
        y = ours(xi, L)
        y.backward(g)
        return y, xi.grad

    def step_pyg():
        xi = x.detach().requires_grad_(True)
        y = ref(xi, ei)
        y.backward(g)
        return y, xi.grad

    def step_pyg_disjoint():
        xi = x.detach().reshape(batch * V, channels).requires_grad_(True)
        y = ref(xi, ei_disjoint)
        y.backward(g.reshape(batch * V, channels))
        return y, xi.grad

    # correctness first
    y1, gx1 = step_ours()
    y2, gx2 = step_pyg()
    err_y = float((y1 - y2).detach().abs().max())
    err_g = float((gx1 - gx2).detach().abs().max())
    if err_y > 1e-4 or err_g > 1e-4:
        raise SystemExit(f"outputs differ: forward {err_y:.2e}, input gradient {err_g:.2e}")

    for fn in (step_ours, step_pyg, step_pyg_disjoint):  # warm-up
        ours.zero_grad(set_to_none=True)
        ref.zero_grad(set_to_none=True)
        fn()
    times = {"facegcn": [], "pyg": [], "pyg_disjoint": []}
    for _ in range(repeat):
        for name, fn in (("facegcn", step_ours), ("pyg", step_pyg), ("pyg_disjoint", step_pyg_disjoint)):
            ours.zero_grad(set_to_none=True)
            ref.zero_grad(set_to_none=True)
            times[name].append(_time(fn, dev))
    best = {k: min(v) for k, v in times.items()}
    baseline = min(best["pyg"], best["pyg_disjoint"])
    return {
        "vertices": V,
        "edges": int(ei.shape[1] // 2),
        "batch": batch,
        "channels": channels,
        "K": K,
        "device": str(dev),
        "threads": torch.get_num_threads(),
        "max_abs_err_forward": err_y,
        "max_abs_err_grad": err_g,
        "best_s": best,
        "median_s": {k: float(np.median(v)) for k, v in times.items()},
        "ratio": baseline / best["facegcn"],
    }


def main(argv=None) -> float:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=189, help="grid side (n*n vertices)")
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--channels", type=int, default=16)
    ap.add_argument("--K", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    r = run(args.n, args.batch, args.channels, args.K, args.repeat, args.device)
    print(f"mesh: {r['vertices']} vertices, {r['edges']} edges; batch {r['batch']}, "
          f"{r['channels']}->{r['channels']} channels, K={r['K']}, {r['device']}, {r['threads']} threads")
    print(f"agreement with torch_geometric: forward {r['max_abs_err_forward']:.2e}, "
          f"input gradient {r['max_abs_err_grad']:.2e}")
    for name, label in (("facegcn", "facegcn ChebConv"), ("pyg", "torch_geometric ChebConv (B,V,C)"),
                        ("pyg_disjoint", "torch_geometric ChebConv (disjoint batch)")):
        print(f"{label:<44} forward+backward: best {1e3 * r['best_s'][name]:8.2f} ms, "
              f"median {1e3 * r['median_s'][name]:8.2f} ms")
    print(f"speed ratio vs torch_geometric ChebConv (forward+backward): {r['ratio']:.2f}x")
    return r["ratio"]


if __name__ == "__main__":
    main()
