"""Scenes and whole gauging sites with known truth, for tests, the demo and the benchmarks.

``scenes`` (advected band-limited textures: stacks with a known velocity) and ``sites``
(a scaffold, an MP4 and ``truth.json`` with the true discharge).

May import: the core modules, :mod:`ivy_gpu.kernels`, :mod:`ivy_gpu.hydraulics` and
:mod:`ivy_gpu.scaffold` (a site is a scaffold, a section and a video written from the truth).
"""
