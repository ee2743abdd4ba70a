"""facegcn.evaluate: every metric of a reconstruction, one name per meaning (:mod:`.metrics`).

The evaluation *runs* that use them (photo folder, synthetic benchmark, reports and plots) are
applications of the pipeline and live in :mod:`facegcn.apps.evaluate`.
"""
