"""Fixtures for the graph tests: the ICT face mesh and small synthetic meshes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import SHARED


def _ict_from_shared():
    p = SHARED / "assets" / "ict-facekit" / "ict_face_model.npz"
    if not p.exists():
        return None
    with np.load(p, allow_pickle=False) as z:
        v = z["neutral"][:9409].astype(np.float64) / 10.0  # cm -> dm
        q = z["faces"]
    q = q[(q < 9409).all(axis=1)]
    f = np.concatenate([q[:, [0, 1, 2]], q[:, [0, 2, 3]]]).astype(np.int64)
    return v.astype(np.float32), f


@pytest.fixture(scope="session")
def ict_mesh():
    """``(vertices (9409, 3) float32 dm, faces (F, 3) int64)`` — ``load_model("ict")`` when it is
    available, else the original ICT-FaceKit asset beside the repository."""
    try:
        from facegcn.morphable import load_model

        m = load_model("ict")
        v = m.mean_shape.detach().cpu().numpy().astype(np.float32)
        f = m.faces.detach().cpu().numpy().astype(np.int64)
        if v.shape == (9409, 3):
            return v, f
    except Exception:  # noqa: BLE001 - the morphable package may be mid-development
        pass
    mesh = _ict_from_shared()
    if mesh is None:
        pytest.skip("ICT face model not available")
    return mesh


@pytest.fixture(scope="session")
def ict_hierarchy(ict_mesh):
    from facegcn.graph import build_hierarchy

    return build_hierarchy(*ict_mesh)


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Graph tests run single-threaded: their tensors are small (<= 10k vertices, tiny batches) and
    on a shared 2-core machine OpenMP barriers made 2 threads 3-8x slower than 1 (measured on a
    generator training step: 0.33 s vs 0.05 s median under load; 26 ms vs 38 ms when idle)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


@pytest.fixture
def torch_seed():
    torch.manual_seed(0)
    np.random.seed(0)
    yield
