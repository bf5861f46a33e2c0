"""Space-Time Image Velocimetry on a stack: search lines, the search, quality control.

``lines`` (the fan of search angles, the samples and taps of every (node, angle) line and the
stack crop they read), ``methods`` (the STIV methods as objects: ``acf``, ``gradient``),
``driver`` (:func:`run_stiv` / :func:`stiv_exhaustive`: score every pair through an engine,
keep each node's best angle, the stride for slow flow, time windows) and ``quality`` (the
downstream normal, node flags, ``sigma_v``).

May import: the core modules, :mod:`ivy_gpu.kernels` and :mod:`ivy_gpu.engines` (it works on
any stack in stack pixels; it knows nothing of scaffolds, videos or sections).
"""
