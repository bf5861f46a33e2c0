"""The decorator every CUDA kernel of the package is compiled with.

A kernel declares the largest block it is launched with. A thread gets at most 255
registers, so a block of up to :data:`ALWAYS_FITS` threads always gets its registers
(65,536 per block on sm_90); a larger one needs a launch bound, so that NVVM keeps the
registers within what the block can get: without it the shared-memory FFT kernel compiled
to 131 registers, and its 512-thread launch would fail on the GPU ("too many resources
requested"), which no simulator run can show. Below that size no bound is passed: ptxas
then trades registers for spills it does not need (64 registers and 32 bytes spilled
instead of 72 for the structure tensor kernel). ``make ptx-check``
(:mod:`ivy_gpu.benchmarks.ptx_check`) assembles every kernel and checks its registers
against its declared block (``block_max``). Numba's CUDA simulator takes no launch bound.
"""

from __future__ import annotations

from typing import Any

from numba import config, cuda

#: The largest block of the element-wise kernels (``config.CUDA_BLOCK`` may be lowered, not
#: raised past this).
ELEMENTWISE_BLOCK_MAX = 256

#: Blocks of at most this many threads get their registers whatever the kernel (255 each).
ALWAYS_FITS = 256


def kernel(block_max: int) -> Any:
    """``cuda.jit`` for a kernel launched with at most ``block_max`` threads per block.

    Compiled once per machine (``cache=True``), not per process; the kernel keeps
    ``block_max`` as an attribute for ``make ptx-check``.
    """

    def wrap(fn: Any) -> Any:
        bound = block_max if block_max > ALWAYS_FITS and not config.ENABLE_CUDASIM else None
        compiled = cuda.jit(cache=True, launch_bounds=bound) if bound else cuda.jit(cache=True)
        k = compiled(fn)
        k.block_max = block_max
        return k

    return wrap
