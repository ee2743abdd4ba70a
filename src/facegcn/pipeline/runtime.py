"""The one place that turns a :class:`~facegcn.config.Config` into process settings (threads, device)."""

from __future__ import annotations

import os
import threading

import numpy as np
import torch

from facegcn.config import Config
from facegcn.errors import ConfigError
from facegcn.render import get_num_threads, set_num_threads


def set_threads(n: int) -> tuple[int, int]:
    """Set torch's and the rasterizer's CPU thread count to ``n`` (0 = leave them as they are).

    Returns:
        the previous ``(torch, rasterizer)`` counts, to restore with :func:`restore_threads`.
    """
    old = (torch.get_num_threads(), get_num_threads())
    if n:
        torch.set_num_threads(n)
        set_num_threads(n)
    return old


def restore_threads(old: tuple[int, int]) -> None:
    """Undo :func:`set_threads` (``old`` is what it returned)."""
    torch.set_num_threads(old[0])
    set_num_threads(old[1])


def apply_runtime(cfg: Config) -> torch.device:
    """Set torch's and the rasterizer's CPU thread count from ``cfg.threads`` (0 = leave torch's
    default) and check that ``cfg.device`` exists.

    Returns:
        the ``torch.device`` every stage should put its tensors on.
    """
    if cfg.device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda requested but CUDA is not available")
    set_threads(cfg.threads)
    if os.environ.get("FACEGCN_PRELOAD", "1") != "0":
        preload_kernels()
    return torch.device(cfg.device)


def freeze_heap() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    For a command that has loaded its modules and models and then runs long optimisations: each
    full collection otherwise walks the millions of objects of torch, numba and the models again.
    Measured on the demo photo (2-core EPYC): 1.5 s of collections per ``facegcn reconstruct``,
    0.8 s with a freeze after the imports. Call it where a process's long-lived state is loaded
    (the CLI commands and the batch workers do); objects frozen are never freed, so not in a loop.
    """
    import gc

    gc.freeze()


_preloaded: threading.Thread | None = None


def preload_kernels() -> threading.Thread:
    """Load the cached numba kernels in a background thread (once per process).

    The first call of a numba kernel in a process costs ~0.4 s even when it is cached on disk
    (numba and LLVM start up, the object code is linked); most of it runs in llvmlite's C calls,
    which release the GIL, so it overlaps with the model loading and the front-end that run in
    the meantime. Numba's compiler lock makes a kernel called early simply wait for it. Set
    ``FACEGCN_PRELOAD=0`` to switch it off."""
    global _preloaded
    if _preloaded is None:
        _preloaded = threading.Thread(target=_load_kernels, name="facegcn-preload", daemon=True)
        _preloaded.start()
    return _preloaded


def _load_kernels() -> None:
    try:
        from facegcn.morphable import _normal_kernels as nk
        from facegcn.render import PerspectiveCamera, interpolate, rasterize, vertex_visibility
        from facegcn.render.meshgen import icosphere

        v, f = icosphere(1, 0.5)
        vp = PerspectiveCamera(size=(16, 16), center=(7.5, 7.5), focal=20.0).to_screen(v[None])
        fr = rasterize(vp, f, (16, 16), backend="numba", threads=1)
        vertex_visibility(vp, f, fr, backend="numba")
        c = torch.full((1, v.shape[0], 3), 0.5, requires_grad=True)  # no RNG: it is the pipeline's
        p = vp.clone().requires_grad_(True)
        interpolate(c, f, fr, p, backend="numba").sum().backward()
        out = np.empty_like(v[None].numpy())
        nk.normal_sums(v[None].numpy(), f.numpy(), out)
        nk.normal_sums_backward(v[None].numpy(), f.numpy(), out, out.copy())
        from facegcn.frontend import ert

        ert.warm_up()  # the 68-point shape predictor's kernel
    except Exception:  # noqa: BLE001 - best effort: the kernels load on first use anyway
        pass


def warm_up(photo=None) -> dict[str, float]:
    """Do a first run's one-off work ahead of time (``make``'s install step calls this).

    Reconstructs ``photo`` (default: the demo photo, ``skimage.data.astronaut()``) once, CPU, one
    optimisation step per stage, and writes its files into a temporary folder. That compiles every
    numba kernel with the argument types the pipeline uses (``cache=True``: numba keeps them in the
    ``__pycache__`` folders beside the kernels' sources, or under ``NUMBA_CACHE_DIR`` when set, and
    every later process loads them from there), and builds what the pipeline caches under
    ``FACEGCN_CACHE`` (mesh hierarchy, converted identity weights, dlib detector copy, parsed
    MediaPipe TFLite graphs). Without it the first reconstruction of a fresh install spends
    7-14 s compiling on a 2-core CPU.

    Returns:
        seconds spent, ``{"models_s", "run_s", "total_s"}``.
    """
    import tempfile
    import time

    from facegcn.io.image import photo_from_array
    from facegcn.pipeline.reconstructor import Reconstructor

    t0 = time.perf_counter()
    if photo is None:
        from skimage import data

        photo = photo_from_array(data.astronaut())
    cfg = Config.preset("default")
    cfg.progress = False
    for name in ("steps_rigid", "steps_landmark", "steps_photo", "steps_identity"):
        setattr(cfg.coarse, name, 1)
    cfg.refine.steps = 1
    rec = Reconstructor(cfg)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="facegcn-warm-up-") as tmp:
        for face in rec(photo):
            rec.write(face, tmp)
    t2 = time.perf_counter()
    return {"models_s": t1 - t0, "run_s": t2 - t1, "total_s": t2 - t0}

