"""Particle picking on DRACO features: a centre-heatmap detector trained with a PU loss.

``config`` (settings), ``detector`` (model), ``loss`` (targets + nnPU focal loss), ``data``
(training crops), ``train``, ``predict`` (one micrograph), ``nms``, ``run`` (batch predict and
writers), ``report`` (overlays, histogram), ``log_picker`` (LoG baseline), ``model_io``.
See ``docs/picking.md``.
"""
