"""facegcn.refine: GCN texture refinement after the coarse fit.

* :mod:`~facegcn.refine.per_image` — :func:`refine_texture`, the per-image optimisation;
* :mod:`~facegcn.refine.generator` — trained generators: :func:`load_texture_generator`,
  :func:`feedforward_texture` (one pass), :func:`build_texture_generator`, ...;
* :mod:`~facegcn.refine.losses` — the refinement objective and its weights.
"""
