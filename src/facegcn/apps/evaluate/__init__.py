"""facegcn.apps.evaluate: evaluation runs of the pipeline (``facegcn evaluate``).

* :mod:`.photos` — :func:`evaluate_folder` (``facegcn evaluate PHOTO_DIR -o REPORT_DIR``);
* :mod:`.synthetic` — :func:`run_synthetic` (``facegcn evaluate --synthetic N -o DIR``);
* :mod:`.scenes` — the synthetic ground-truth scenes (coefficients, textures, backgrounds);
* :mod:`.report` — tables (markdown, CSV) and matplotlib plots.

The metrics themselves are in :mod:`facegcn.evaluate.metrics`.
"""

from facegcn.apps.evaluate.photos import evaluate_folder, evaluate_reconstruction, refine_available
from facegcn.apps.evaluate.synthetic import run_synthetic

__all__ = ["evaluate_folder", "run_synthetic", "evaluate_reconstruction", "refine_available"]
