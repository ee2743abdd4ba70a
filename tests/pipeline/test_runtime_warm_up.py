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


def test_freeze_heap_moves_live_objects_out_of_the_collector():
    import gc
    import subprocess
    import sys

    # in a child process: a freeze is permanent for the process it runs in
    code = ("import gc; from facegcn.pipeline.runtime import freeze_heap; keep = [[i] for i in range(1000)]; "
            "n = gc.get_freeze_count(); freeze_heap(); print(gc.get_freeze_count() - n)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out) >= 1000
    assert gc.isenabled()
