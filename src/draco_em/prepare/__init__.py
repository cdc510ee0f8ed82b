"""``draco prepare``: raw movies or motion-corrected micrographs → training triplets + manifest.

Modules, in the order the data flows: :mod:`~draco_em.prepare.config` (settings),
:mod:`~draco_em.prepare.inputs` (inputs → work items), :mod:`~draco_em.prepare.frames` (one
movie → gain-corrected frames), :mod:`~draco_em.prepare.motion` (alignment, sums),
:mod:`~draco_em.prepare.triplets` (one item → files + manifest row),
:mod:`~draco_em.prepare.manifest` (``triplets.star``), :mod:`~draco_em.prepare.run` (the batch).
See ``docs/prepare.md``.
"""
