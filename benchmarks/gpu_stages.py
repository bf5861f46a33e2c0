"""Per-stage device times of GPU STIV on ``grid`` (``make gpu-check``'s stiv step).

The GPU engine's ACF pass, stage by stage, each stage synchronized on its own (median of 3
after a warm-up; one call under the simulator, on four lines): the fused gather + z-score from
line geometry, the row rFFTs, the cross-spectra kernel, the inverse FFTs, then either the ray
sums + peaks kernel or the array code it replaces (window copy, dense cuBLAS product, peaks),
and the one download. The sum of the stages is what one chunk costs without launch overlap;
the engine's own call (the stiv rows) can only be faster. Beside them, the direct path
(``IVY_GPU_ACF=direct``, :mod:`ivy_gpu.kernels.acf_direct_device`): the fused gather without
padding and the one kernel that sums each window, its rays and peak; and the shared-memory
FFT path (``IVY_GPU_ACF=shared``, :mod:`ivy_gpu.kernels.acf_shared_device`): the same
gather, then one kernel that autocorrelates each STI in shared memory and takes its peak.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import numpy as np


def stage_rows(sim: bool, sizes: dict[str, int], stack: np.ndarray, xy: np.ndarray) -> dict:
    """``{stage: seconds}`` of one pass over ``grid``'s lines, plus ``pairs``."""
    from ivy_gpu.engines.xp_engine import XpEngine
    from ivy_gpu.kernels import acf_direct_device, acf_shared_device, rays_device, sti_device
    from ivy_gpu.kernels.rays import AcfPlan
    from ivy_gpu.params import StivParams
    from ivy_gpu.stiv.lines import line_geometry, pair_lines

    if sim:
        xp = np
    else:
        import cupy as xp
    engine = XpEngine(xp, use_cuda_kernels=True)
    params = StivParams(num_pixels=sizes["p"], phi_origin=90,
                        phi_range=(sizes["angles"] - 1) / 2, d_phi=1)  # fmt: skip
    lines = line_geometry(xy, params, stack.shape[2], stack.shape[1])
    if sim:  # the simulator runs every thread in Python
        lines = dataclasses.replace(lines, pairs=lines.pairs[:4])
    batch = pair_lines(lines, params)
    t = stack.shape[0]
    plan = AcfPlan.build(params.num_pixels, t, params.d_rho, params.d_theta)
    op = plan.operator
    n_fft = op.fft_length(t)
    handle = engine.prepare(engine.to_device(stack), lines.window, 0.0, batch)
    weights = xp.asarray(op.weights)
    state: dict[str, Any] = {}

    def fused():
        state["z"], state["valid"] = engine._stis(handle, batch, n_fft, standardize=True)

    def rfft():
        state["zf"] = engine.fft.rfft(state["z"], n=n_fft, axis=-1)

    def cross():
        state["c"] = engine._cross_spectra(state["zf"], op.lx_max)

    def irfft():
        state["r"] = engine.fft.irfft(state["c"], n=n_fft, axis=-1)

    def ray_kernel():
        out = xp.empty((state["r"].shape[0], 4), dtype=xp.float64)
        rays_device.ray_peaks_cuda(
            state["r"], *engine._plan_arrays(plan, n_fft), state["valid"].astype(xp.uint8), out
        )
        state["out"] = out

    def ray_array_code():
        state["dense"] = rays_device.ray_peaks_xp(state["r"], op, state["valid"], weights, xp)

    def download():
        state["host"] = engine.to_host(state["out"])

    def direct_fused():  # the direct path's STIs: T columns, no padding
        state["zt"], state["vt"] = engine._stis(handle, batch, t, standardize=True)

    def direct_kernel():
        out = xp.empty((state["zt"].shape[0], 4), dtype=xp.float64)
        acf_direct_device.acf_direct_cuda(
            state["zt"], t, op, *engine._plan_arrays(plan, None), state["vt"].astype(xp.uint8),
            out, 0, sti_device.launch_block(acf_direct_device.DIRECT_BLOCK),
        )  # fmt: skip
        state["direct"] = out

    twiddles = tuple(xp.asarray(a) for a in acf_shared_device.twiddles(
        acf_shared_device.fft_size(op, t)))  # fmt: skip

    def shared_kernel():
        out = xp.empty((state["zt"].shape[0], 4), dtype=xp.float64)
        acf_shared_device.acf_shared_cuda(
            state["zt"], t, op, *twiddles, *engine._plan_arrays(plan, None),
            state["vt"].astype(xp.uint8), out,
        )  # fmt: skip
        state["shared"] = out

    stages = {"fused gather + z-score": fused, "rFFT": rfft, "cross-spectra": cross,
              "irFFT": irfft, "ray sums + peaks kernel": ray_kernel,
              "(array code instead: window, GEMM, peaks)": ray_array_code,
              "download": download,
              "(direct path: fused gather + z-score, T columns)": direct_fused,
              "(direct path: window sums + rays + peaks kernel)": direct_kernel,
              "(shared path: shared-memory FFT + rays + peaks kernel)": shared_kernel}  # fmt: skip
    out: dict[str, Any] = {"pairs": len(batch)}
    for name, fn in stages.items():
        times = []
        for _ in range(1 if sim else 4):
            t0 = time.perf_counter()
            fn()
            engine.synchronize()
            times.append(time.perf_counter() - t0)
        out[name] = float(np.median(times[1:] or times))
    # the kernel, the array code and the direct kernel chose the same rays
    host_dense = engine.to_host(state["dense"])
    out["same_rays"] = bool(np.array_equal(state["host"][:, 0], host_dense[:, 0]))
    out["direct_fits"] = acf_direct_device.fits(op)
    host_direct = engine.to_host(state["direct"])
    out["direct_same_rays"] = bool(np.array_equal(state["host"][:, 0], host_direct[:, 0]))
    out["shared_fits"] = acf_shared_device.fits(op, t)
    host_shared = engine.to_host(state["shared"])
    out["shared_same_rays"] = bool(np.array_equal(state["host"][:, 0], host_shared[:, 0]))
    return out


def stage_markdown(stages: dict) -> list[str]:
    """One line per stage (ms) and the sum of the kernel path's stages."""
    keys = [k for k, v in stages.items() if isinstance(v, float)]  # seconds, not the flags
    path = [k for k in keys if not k.startswith("(")]
    total = sum(stages[k] for k in path)
    direct = [k for k in keys if k.startswith("(direct path")]
    d_total = sum(stages[k] for k in direct) + stages.get("download", 0.0)
    shared = [k for k in keys if k.startswith("(shared path")]
    s_total = sum(stages[k] for k in shared) + stages.get("download", 0.0)
    s_total += sum(stages[k] for k in direct if "gather" in k)  # the same STIs
    head = f"Stages of one ACF pass on `grid` ({stages['pairs']} STIs, synchronized each):"
    lines = ["", head, ""]
    lines += [f"- {k}: {1e3 * stages[k]:.3f} ms" for k in keys]
    lines += [
        f"- sum of the kernel path: {1e3 * total:.3f} ms "
        f"({stages['pairs'] / total:,.0f} STIs/s); ray kernel and array code chose the same "
        f"rays: {stages['same_rays']}"
    ]
    if direct:
        lines += [
            f"- sum of the direct path (its two stages and the download): {1e3 * d_total:.3f} ms "
            f"({stages['pairs'] / d_total:,.0f} STIs/s); it chose the cuFFT path's rays: "
            f"{stages.get('direct_same_rays')}"
        ]
    if shared:
        lines += [
            f"- sum of the shared-memory FFT path (the direct path's gather, its kernel, the "
            f"download): {1e3 * s_total:.3f} ms ({stages['pairs'] / s_total:,.0f} STIs/s); it "
            f"chose the cuFFT path's rays: {stages.get('shared_same_rays')}"
        ]
    return lines


def fused_stage(sim: bool, s: dict[str, int], stack: np.ndarray, xy: np.ndarray) -> dict:
    """The gather + z-score stage on ``grid``: two kernels from host taps vs the fused kernel.

    Two kernels (today's path): upload the four tap arrays, ``gather_cuda``,
    ``standardize_cuda``. Fused (:mod:`ivy_gpu.kernels.sti_device`): upload each pair's node
    and angle and the fan's offsets, one block per STI over the time-last crop (built once
    per video: timed apart). Synchronized, median of 3 after a warm-up; the largest
    difference between the two z-scored STIs and whether the valid flags agree.
    """
    from ivy_gpu.engines.base import host_array
    from ivy_gpu.kernels import sti
    from ivy_gpu.kernels.sti_device import gather_zscore_cuda, launch_block, time_last_crop
    from ivy_gpu.params import StivParams
    from ivy_gpu.stiv.lines import line_geometry, line_offsets, pair_taps, search_angles

    if sim:
        xp, sync = np, (lambda: None)
    else:
        import cupy as xp

        sync = xp.cuda.get_current_stream().synchronize
    params = StivParams(num_pixels=s["p"], phi_origin=90, phi_range=(s["angles"] - 1) / 2,
                        d_phi=1)  # fmt: skip
    lines = line_geometry(xy, params, stack.shape[2], stack.shape[1])
    pairs = lines.pairs[:4] if sim else lines.pairs  # the simulator runs every thread
    lines = dataclasses.replace(lines, pairs=pairs)
    taps = pair_taps(lines, params)
    y_lo, y_hi, x_lo, x_hi = lines.window
    n, t_len, n_ang = len(pairs), stack.shape[0], lines.phis.shape[1]
    dev_stack = xp.asarray(stack)
    crop = xp.ascontiguousarray(dev_stack[:, y_lo : y_hi + 1, x_lo : x_hi + 1])
    fan = search_angles(params.phi_origin, params.phi_range, params.d_phi)
    host = dict(
        node_x=xy[pairs // n_ang, 0].astype(np.float64),
        node_y=xy[pairs // n_ang, 1].astype(np.float64),
        pair_angle=(pairs % n_ang).astype(np.int32),
        offsets=line_offsets(fan, s["p"]),
    )

    def two_kernels():
        dev_taps = [xp.asarray(a) for a in taps]
        out = xp.empty((n, s["p"], t_len), dtype=xp.float32)
        valid = xp.ones(n, dtype=xp.uint8)
        sti.gather_cuda(crop, *dev_taps, out)
        sti.standardize_cuda(out, valid)
        sync()
        return out, valid

    def fused(tl):
        dev = {k: xp.asarray(v) for k, v in host.items()}
        out = xp.empty((n, s["p"], t_len), dtype=xp.float32)
        valid = xp.ones(n, dtype=xp.uint8)
        gather_zscore_cuda(
            tl,
            **dev,
            x_lo=x_lo,
            y_lo=y_lo,
            nearest=False,
            out=out,
            valid=valid,
            block=launch_block(),
        )  # the engine's block: 1 thread in the simulator
        sync()
        return out, valid

    def median(fn, *args) -> tuple[float, Any]:
        t0 = time.perf_counter()
        got = fn(*args)  # warm-up (compilation); the only call under the slow simulator
        times = [time.perf_counter() - t0]
        for _ in range(0 if sim else 3):
            t0 = time.perf_counter()
            fn(*args)
            times.append(time.perf_counter() - t0)
        return float(np.median(times[1:] or times)), got

    t0 = time.perf_counter()
    tl = time_last_crop(dev_stack, lines.window, xp)
    sync()
    tl_s = time.perf_counter() - t0
    two_s, (z2, v2) = median(two_kernels)
    one_s, (z1, v1) = median(fused, tl)
    diff = float(np.max(np.abs(np.asarray(host_array(z1)) - np.asarray(host_array(z2)))))
    return {
        "pairs": n, "frames": t_len, "P": s["p"], "time_last_s": tl_s, "two_kernels_s": two_s,
        "fused_s": one_s, "max_diff": diff,
        "valid_equal": bool(np.array_equal(host_array(v1), host_array(v2))),
    }  # fmt: skip
