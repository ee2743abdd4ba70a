"""Tiny thread pool for the GIL-releasing numba kernels.

Numba's ``parallel=True`` runtime (OpenMP / TBB / workqueue pools) is not used: its OpenMP
threads spin-wait, and on a 2-core machine shared with other processes (or with torch's own
OpenMP pool) a parallel region was measured 15-20x *slower* than the serial kernel. Here the
kernels are serial ``nogil`` functions over a slice of the work (rows of one image) and this module
runs the slices in ordinary Python threads that block, not spin, while idle.

The worker count defaults to ``numba.config.NUMBA_NUM_THREADS`` (the core count unless the
``NUMBA_NUM_THREADS`` environment variable says otherwise); :func:`set_num_threads` overrides it
for this package only. Nothing is created at import time; the pool starts on first parallel use.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None
_pool_size = 0
_num_threads: int | None = None


def get_num_threads() -> int:
    """Threads the render kernels use (see module docstring)."""
    if _num_threads is not None:
        return _num_threads
    from numba import config

    return max(1, int(config.NUMBA_NUM_THREADS))


def set_num_threads(n: int | None) -> None:
    """Set the render kernels' thread count (``None`` = back to the default)."""
    global _num_threads
    _num_threads = None if n is None else max(1, int(n))


def _get_pool(workers: int) -> ThreadPoolExecutor:
    global _pool, _pool_size
    with _lock:
        if _pool is None or _pool_size < workers:
            old = _pool
            _pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="facegcn-render")
            _pool_size = workers
            if old is not None:
                old.shutdown(wait=False)
        return _pool


def run_tasks(tasks: Sequence[Callable[[], None]], threads: int | None = None) -> None:
    """Run ``tasks`` split into ``threads`` contiguous groups, the first in the calling thread."""
    n = min(get_num_threads() if threads is None else max(1, threads), len(tasks))
    if n <= 1:
        for t in tasks:
            t()
        return
    groups = [list(tasks[(i * len(tasks)) // n : ((i + 1) * len(tasks)) // n]) for i in range(n)]

    def run_group(g):
        for t in g:
            t()

    pool = _get_pool(n - 1)
    futures = [pool.submit(run_group, g) for g in groups[1:]]
    err = None
    try:
        run_group(groups[0])
    except BaseException as e:  # still wait for the workers (they write into shared buffers)
        err = e
    for f in futures:
        try:
            f.result()
        except BaseException as e:
            err = err or e
    if err is not None:
        raise err


def row_splits(height: int, parts: int) -> list[tuple[int, int]]:
    parts = max(1, min(parts, height))
    return [((i * height) // parts, ((i + 1) * height) // parts) for i in range(parts)]
