"""facegcn.evaluate: metrics, the photo-folder evaluation, the synthetic ground-truth benchmark,
reports (markdown + CSV + JSON) and plots.

* :mod:`.metrics` — masked PSNR / SSIM / L1, identity cosine, landmark NME, rigid-aligned
  geometry error, per-vertex texture PSNR;
* :mod:`.photos` — :func:`evaluate_folder` (``facegcn evaluate PHOTO_DIR -o REPORT_DIR``);
* :mod:`.synthetic` — :func:`run_synthetic` (``facegcn evaluate --synthetic N -o DIR``);
* :mod:`.report` — tables and matplotlib plots.

Heavy dependencies (the identity network, matplotlib) load on first use.
"""

from __future__ import annotations

__all__ = ["evaluate_folder", "run_synthetic", "evaluate_reconstruction", "refine_available"]


def __getattr__(name: str):
    if name in ("evaluate_folder", "evaluate_reconstruction", "refine_available"):
        from facegcn.evaluate import photos

        return getattr(photos, name)
    if name == "run_synthetic":
        from facegcn.evaluate.synthetic import run_synthetic

        return run_synthetic
    raise AttributeError(f"module 'facegcn.evaluate' has no attribute {name!r}")
