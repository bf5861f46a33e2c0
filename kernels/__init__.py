"""Hot loops of ivy_gpu, one module per operation, each with its CPU twin.

Installed as ``ivy_gpu.kernels``. Every operation has a NumPy reference (the
readable definition) and one or more fast twins with the same name suffixed by
the target: ``_numba`` (parallel CPU), ``_cuda`` (Numba-CUDA, also runs under
``NUMBA_ENABLE_CUDASIM=1``) or ``_xp`` (array-API shaped: CuPy on a GPU, NumPy in
CI).
"""
