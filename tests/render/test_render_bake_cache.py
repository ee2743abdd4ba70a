"""The UV raster cache of :func:`facegcn.render.bake._uv_fragments`: a cached raster is the
rasterizer's own output field by field; an unreadable cache file is rebuilt; small rasters are not
cached."""

import numpy as np
import torch

from facegcn.render import bake
from facegcn.render.rasterize import rasterize


def _layout():
    g = np.random.default_rng(0)
    uv = g.random((40, 2))
    fuv = np.array([[i, (i + 1) % 40, (i + 7) % 40] for i in range(40)], np.int64)
    return uv, fuv


def _direct(uv, fuv, H, W):
    px = bake.uv_to_pixel(uv, (H, W))
    vs = np.concatenate([px, np.ones((len(px), 1))], 1)[None]
    return rasterize(torch.from_numpy(vs), torch.from_numpy(fuv), (H, W), backend="numba")


def test_cached_uv_raster_is_the_rasterizers_output(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEGCN_CACHE", str(tmp_path))
    monkeypatch.setattr(bake, "UV_CACHE_TEXELS", 64 * 64)
    uv, fuv = _layout()
    ref = _direct(uv, fuv, 64, 80)
    first = bake._uv_fragments(uv, fuv, 64, 80)
    files = list((tmp_path / "uv-raster").glob("*.npz"))
    assert len(files) == 1
    second = bake._uv_fragments(uv, fuv, 64, 80)  # read back
    for k in ("tri_id", "bary", "depth", "mask"):
        assert torch.equal(getattr(first, k), getattr(ref, k)) and torch.equal(getattr(second, k), getattr(ref, k)), k
    files[0].write_bytes(b"not an npz")  # corrupt: rebuilt and rewritten
    third = bake._uv_fragments(uv, fuv, 64, 80)
    assert torch.equal(third.tri_id, ref.tri_id)
    with np.load(files[0], allow_pickle=False) as z:
        assert np.array_equal(z["tri"], ref.tri_id[0].numpy())
    bake._uv_fragments(uv, fuv, 64, 81)  # another size: another entry
    assert len(list((tmp_path / "uv-raster").glob("*.npz"))) == 2
    bake._uv_fragments(uv, fuv, 16, 16)  # below UV_CACHE_TEXELS: not cached
    assert len(list((tmp_path / "uv-raster").glob("*.npz"))) == 2
