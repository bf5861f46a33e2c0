"""Scenes and whole gauging sites with known truth, for tests, the demo and the benchmarks.

``scenes`` (advected band-limited textures: stacks with a known velocity) and ``sites``
(a scaffold, an MP4 and ``truth.json`` with the true discharge).

May import: core, kernels, hydraulics, scaffold, engines, stiv, frames, report.
"""
