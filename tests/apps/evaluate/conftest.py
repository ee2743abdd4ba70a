"""Shared fixtures of the evaluation tests: fast configurations and a small photo folder made from
skimage's public-domain astronaut (crop, mirror, brightness) plus two bad files."""

from __future__ import annotations

import io

import numpy as np
import pytest


def tiny_config(refine: bool = True, photo_steps: int = 20):
    """The CLI's --fast config with fewer photometric steps (tests check plumbing, not quality)."""
    from facegcn.cli.reconstruct import build_config

    cfg = build_config(fast=True, quiet=True, refine=refine)
    cfg.coarse.steps_photo = photo_steps
    cfg.refine.steps = 10
    return cfg


def _png(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """One intra-op thread: on a shared, oversubscribed CPU two spinning threads per process make
    the optimisation loops several times slower (the tests check plumbing and metrics, not speed)."""
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="session")
def astronaut() -> np.ndarray:
    from skimage import data

    return np.ascontiguousarray(data.astronaut())


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory, astronaut):
    """3 photos (crop, mirror, brighter) + a text file + a truncated PNG."""
    d = tmp_path_factory.mktemp("photos")
    a = astronaut
    crop = a[20:400, 60:440]
    flip = np.ascontiguousarray(a[:, ::-1])
    bright = np.clip(a.astype(np.float32) * 1.25 + 10, 0, 255).astype(np.uint8)
    (d / "a_crop.png").write_bytes(_png(crop))
    (d / "b_flip.png").write_bytes(_png(flip))
    (d / "c_bright.jpg").write_bytes(_jpeg(bright))
    (d / "notes.txt").write_text("not an image\n")
    (d / "broken.png").write_bytes(_png(a)[:300])
    return d


def _jpeg(arr: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG", quality=92)
    return buf.getvalue()
