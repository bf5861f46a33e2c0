"""Compute backends behind one protocol.

``base`` (the :class:`Engine` protocol every backend provides, ``HostMemory`` for CPU
engines), ``backends`` (the registry: name -> engine, ``auto``, GPU detection),
``numpy_engine`` (the reference: the specification written out), ``numba_engine`` (the
parallel CPU engine) and ``xp_engine`` (the GPU engine on an array namespace: CuPy on a GPU,
NumPy in CI). Nothing outside this part asks which backend it holds.

May import: the core modules, :mod:`ivy_gpu.kernels`, and :mod:`ivy_gpu.scaffold` (the
rectifier's type only).
"""
