"""facegcn.pipeline: the one composition of the stages.

:class:`Reconstructor` holds the loaded models and runs photo → front-end → coarse coefficients →
mesh → GCN texture; a :class:`Reconstruction` is one face's result and writes its files with
:meth:`Reconstruction.save` (:mod:`.export`, :mod:`.figures`). The CLI, batch, video, evaluation
and the web demo all go through these.
"""

from facegcn.pipeline.export import EXPORT_SCALE, write_outputs
from facegcn.pipeline.figures import shaded_geometry
from facegcn.pipeline.reconstructor import Reconstruction, Reconstructor
from facegcn.pipeline.runtime import apply_runtime, restore_threads, set_threads

__all__ = ["Reconstructor", "Reconstruction", "write_outputs", "shaded_geometry", "EXPORT_SCALE",
           "apply_runtime", "set_threads", "restore_threads"]
