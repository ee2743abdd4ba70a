"""Shared pytest fixtures and markers.

GPU tests are marked ``@pytest.mark.gpu`` and skipped without CUDA. Artefacts (images a person may
want to look at) go to ``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip_gpu = pytest.mark.skip(reason="needs CUDA (no GPU on this machine)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip_gpu)


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keep the facegcn cache per test session unless the caller set one explicitly."""
    if "FACEGCN_CACHE" not in os.environ:
        os.environ["FACEGCN_CACHE"] = str(tmp_path_factory.mktemp("facegcn-cache"))
    # One thread per test process: `make test` runs 2 xdist workers on 2 cores, and oversubscribed
    # OpenMP/numba threads make steps 3–40× slower on a shared machine.
    torch.set_num_threads(1)
    from facegcn.render import set_num_threads

    set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def ict():
    """The embedded ICT-FaceKit model (shared, read-only: do not modify its buffers)."""
    from facegcn.morphable import load_model

    return load_model("ict")


@pytest.fixture(scope="session")
def syn(ict):
    """The differentiable forward model (coefficients → render) on the ICT model."""
    from facegcn.coarse.synthesis import FaceSynthesis

    return FaceSynthesis(ict)


@pytest.fixture(scope="session")
def artifacts_dir() -> Path:
    d = REPO / "test-artifacts"
    d.mkdir(exist_ok=True)
    return d


@pytest.fixture(scope="session")
def shared_ict_npz() -> Path:
    p = SHARED / "assets" / "ict-facekit" / "ict_face_model.npz"
    if not p.exists():
        pytest.skip("original ICT-FaceKit asset not found beside the repository")
    return p
