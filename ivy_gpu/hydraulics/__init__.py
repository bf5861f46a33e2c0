"""Hydraulics: from surface velocities along a section to discharge.

``xsection`` (the surveyed cross-section: AreaComp ``.mat``, water edges, depths, wetted
area), ``grid`` (nodes along the section, masks, stations), ``discharge`` (normal component,
gap filling, the mid-section table) and ``uncertainty`` (ISO 748 and IVE).

May import: the core modules of :mod:`ivy_gpu` (``config``, ``units``, ``checks``, ``fileio``,
``log``, ``params``, ``results``, ``angles``) and :mod:`ivy_gpu.kernels`.
"""
