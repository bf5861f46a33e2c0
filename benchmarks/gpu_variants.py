"""The GPU engine variants ``make gpu-check`` measures, and the sizes it measures them at.

The kernels (the cuFFT path), the kernels with each per-STI ACF kernel (``IVY_GPU_ACF=direct``,
``IVY_GPU_ACF=shared``) and the array code; on a GPU at the real sizes, under the simulator at
tiny ones, each variant where it runs (:func:`_skipped`).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _engines(sim: bool) -> dict[str, Any]:
    """The GPU engine variants to measure.

    The kernels (cuFFT path), the kernels with each per-STI ACF kernel (:data:`PER_STI`:
    ``IVY_GPU_ACF=direct``, ``IVY_GPU_ACF=shared``), and the array code.
    """
    from ivy_gpu.engines.xp_engine import XpEngine

    if sim:
        xp, kernels, label, arrays = np, True, "gpu-sim+cuda-kernels", "gpu-sim array code"
    else:
        import cupy as xp

        from ivy_gpu.engines import backends

        engine = backends.get_engine("cupy")
        kernels = engine.path == "kernels"
        label = "cupy+cuda-kernels" if kernels else f"cupy ({engine.path})"
        arrays = "cupy array code"
    out = {label: XpEngine(xp, use_cuda_kernels=True) if sim else engine}
    for acf_kernel, labels in PER_STI.items():
        if kernels:
            variant = XpEngine(xp, use_cuda_kernels=True)
            variant.acf_kernel = acf_kernel
            out[labels[sim]] = variant
    out[arrays] = XpEngine(xp, use_cuda_kernels=False)
    return out


#: Labels of the per-STI ACF variants (each runs the ACF method's lines that fit it), on a
#: GPU and under the simulator.
DIRECT, DIRECT_SIM = "cupy+cuda-kernels, direct ACF", "gpu-sim+cuda-kernels, direct ACF"
SHARED = "cupy+cuda-kernels, shared-memory FFT ACF"
SHARED_SIM = "gpu-sim+cuda-kernels, shared-memory FFT ACF"
PER_STI = {"direct": (DIRECT, DIRECT_SIM), "shared": (SHARED, SHARED_SIM)}

#: The agreement cases and the stiv layouts the simulator runs each per-STI variant on (its
#: time: the shared-memory FFT kernel's thread per frequency bin makes it the slowest there,
#: about 28 s for a case: its rehearsal is the stage line; a GPU runs every case).
SIM_CASES = {DIRECT_SIM: ("acf", "acf, stride (1 px/frame)"), SHARED_SIM: ()}
SIM_LAYOUTS = {DIRECT_SIM: ("grid", "scattered", "row"), SHARED_SIM: ()}


def _skipped(
    label: str, method: str, p: int, sim: bool, case: str | None = None, layout: str = "grid"
) -> bool:
    """Whether to leave out a per-STI variant's row.

    On what it does not run (the gradient method, long lines) it is the cuFFT variant's code,
    not measured twice; under the simulator it runs :data:`SIM_CASES` and
    :data:`SIM_LAYOUTS` only.
    """
    if not any(label in labels for labels in PER_STI.values()):
        return False
    if method != "acf" or p > _sizes(sim)["p"]:
        return True
    if not sim:
        return False
    return (case is not None and case not in SIM_CASES[label]) or layout not in SIM_LAYOUTS[label]


def _sizes(sim: bool) -> dict[str, int]:
    # long_p: the long search lines IVyTools sets on fine pixels (the numba engine's
    # pixel-axis FFT path; the GPU's cross-spectra grow with P squared)
    if sim:
        return dict(frames=24, height=120, width=200, p=8, angles=5, long_p=12)
    return dict(frames=300, height=1080, width=1920, p=32, angles=31, long_p=138)
