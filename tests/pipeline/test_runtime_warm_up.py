"""warm_up() (the install step's first run): it runs the whole pipeline once, every numba kernel
the pipeline calls ends up compiled, and those kernels cache to disk (so a later process loads
them instead of compiling: the reference is numba's own cache index)."""

from __future__ import annotations

import pytest

pytest.importorskip("numba")


def test_warm_up_compiles_the_kernels_it_uses():
    from facegcn.morphable import _normal_kernels as nk
    from facegcn.pipeline.runtime import warm_up
    from facegcn.render import _numba_kernels as rk

    took = warm_up()
    assert took["total_s"] > 0 and took["run_s"] > 0
    used = [rk.rasterize_tasks, rk.interpolate_fwd_rows, rk.interpolate_bwd_rows, rk.visibility_kernel,
            nk.normal_sums, nk.normal_sums_backward]
    for k in used:
        assert k.signatures, f"{k.py_func.__name__} was not compiled by the warm-up"
        assert k._cache is not None and k._cache._cache_path, k.py_func.__name__  # cache=True: on disk
