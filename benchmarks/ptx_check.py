"""Every CUDA kernel compiled for a real GPU, on a machine without one.

The simulator runs the kernels' Python source, so it cannot see what only the CUDA target
refuses: a shared array sized by an expression or another module's constant, a type a
device function cannot take, an operation NVVM does not lower. Such a kernel fails at the
probe on the first GPU machine, and the whole GPU backend with it. This check catches that
here, with the compiler the GPU extras install (numba-cuda's NVVM, ``numba-cuda[cu13]``):

1. **record** (a child process, under the simulator): the probe's launches and the GPU
   engine's own STIV calls on a tiny clip, for every ACF path (cuFFT, direct, shared FFT)
   and the agreement cases of ``make gpu-check`` (blur, long lines, nearest sampling,
   stride, compat, gradient), each kernel launch recorded as its function and the Numba
   types of its arguments, exactly as the engine passes them;
2. **compile** (this process, the real CUDA target): each recorded kernel and signature
   through ``numba.cuda.compile_ptx`` for compute capability :data:`CC`, its PTX's local
   and shared memory reported.

Run ``python -m ivy_gpu.benchmarks.ptx_check`` (``make ptx-check``); exit status 0 when every
kernel compiles, 1 when one does not (named, with the compiler's first line), 2 when no
NVVM is installed.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

#: Compute capability compiled for (H100 / H200).
CC = (9, 0)


#: The engine's launches worth recording: each ACF path, a blurred (float32) crop, compat's
#: host taps (gather, then the z-score kernel), the gradient method. The other agreement
#: cases of ``make gpu-check`` (long lines, nearest sampling, stride) launch the same kernels
#: with the same argument types; the probe launches both ray-kernel variants.
CASES = (("fft", {}), ("direct", {}), ("shared", {}), ("fft", {"sigma": 1.0}),
         ("fft", {"compat": "ivytools"}), ("fft", {"method": "gradient"}))  # fmt: skip


def _scenarios() -> None:
    """The launches to record: the probe's, then the engine's on a tiny clip (simulator)."""
    from ivy_gpu.benchmarks.suite import node_layout, streaming_stack
    from ivy_gpu.engines.xp_engine import XpEngine
    from ivy_gpu.engines.xp_probe import _probe_kernels
    from ivy_gpu.kernels import sti
    from ivy_gpu.params import StivParams
    from ivy_gpu.stiv.driver import run_stiv

    _probe_kernels(np)
    rng = np.random.default_rng(0)
    stack = rng.integers(0, 255, (6, 5, 7), dtype=np.uint8)
    taps = sti.bilinear_taps(rng.uniform(0, 5, (3, 4)), rng.uniform(0, 3, (3, 4)), 7, 5, "bilinear")
    sti.gather_cuda(stack, *taps, np.empty((3, 4, 6), np.float32))  # gpu_stages' two-kernel path
    stack = streaming_stack(16, 60, 80, speed_px=2)
    xy = node_layout("grid", 60, 80, 8)[:1]
    for kernel, over in CASES:
        engine = XpEngine(np, use_cuda_kernels=True)
        engine.acf_kernel = kernel
        over = dict(over)
        compat = over.pop("compat", None)
        params = StivParams(num_pixels=8, phi_origin=90, phi_range=1, d_phi=1, refine=True,
                            stride=False, **over).with_compat(compat)  # fmt: skip
        run_stiv(engine.to_device(stack), xy[:, 0], xy[:, 1], params, backend=engine,
                 pixel_gsd=0.01, d_t=1 / 30)  # fmt: skip


def record(path: Path) -> int:
    """Run :func:`_scenarios` under the simulator; pickle ``[(module, name, types), ...]``."""
    import numba
    from numba.cuda.simulator.kernel import FakeCUDAKernel

    seen: dict[tuple[str, str, tuple], None] = {}
    launch = FakeCUDAKernel.__call__

    def recording(self: Any, *args: Any) -> Any:
        if not self._device:
            types = tuple(numba.typeof(a) for a in args)
            seen[(self.fn.__module__, self.fn.__name__, types)] = None
        return launch(self, *args)

    FakeCUDAKernel.__call__ = recording  # type: ignore[method-assign]
    try:
        _scenarios()
    finally:
        FakeCUDAKernel.__call__ = launch  # type: ignore[method-assign]
    path.write_bytes(pickle.dumps(list(seen)))
    return len(seen)


def _memory(ptx: str) -> tuple[int, int]:
    """Bytes of local and of shared memory the PTX declares."""
    local = sum(int(n) for n in re.findall(r"\.local\s+\.align\s+\d+\s+\.b8\s+\S+\[(\d+)\]", ptx))
    shared = sum(int(n) for n in re.findall(r"\.shared\s+\.align\s+\d+\s+\.b8\s+\S+\[(\d+)\]", ptx))
    return local, shared


class _Device:
    """Stands for the GPU whose compute capability device functions are compiled for."""

    compute_capability = CC


def ptxas() -> str | None:
    """The PTX assembler the dev extra installs (``nvidia-cuda-nvcc``), or one on the PATH."""
    try:
        import nvidia

        for root in nvidia.__path__:
            for found in sorted(Path(root).glob("cu*/bin/ptxas")):
                return str(found)
    except ImportError:
        pass
    return shutil.which("ptxas")


def assemble(ptx: str, tool: str) -> dict[str, int]:
    """``ptxas -v`` for :data:`CC`: registers, spill bytes, stack and static shared memory."""
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        done = subprocess.run(
            [tool, f"-arch=sm_{CC[0]}{CC[1]}", "-v", str(src), "-o", str(Path(tmp) / "k.cubin")],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
    log = done.stderr + done.stdout

    def first(pattern: str) -> int:
        m = re.search(pattern, log)
        return int(m.group(1)) if m else 0

    return {
        "registers": first(r"Used (\d+) registers"),
        "spill_bytes": first(r"(\d+) bytes spill stores"),
        "stack_bytes": first(r"(\d+) bytes stack frame"),
        "smem_bytes": first(r"(\d+) bytes smem"),
    }


class _Device:
    """Stands for the GPU whose compute capability device functions are compiled for."""

    compute_capability = CC


#: Registers and static shared memory of one multiprocessor's block (sm_90).
REGISTERS_PER_BLOCK = 65536
STATIC_SHARED_BYTES = 48 * 1024


def compile_all(launches: list[tuple[str, str, tuple]]) -> list[dict]:
    """Each recorded kernel and signature through NVVM for :data:`CC` (the CUDA target).

    With the kernel's own options (fastmath, launch bounds). A kernel's device functions
    are compiled for the current device's compute capability; without a device,
    :class:`_Device` answers for it. With ``ptxas`` the PTX is assembled too, and a kernel
    fails when its largest block (its launch bound) cannot get its registers or its static
    shared memory exceeds 48 KB: the launch would fail on the GPU.
    """
    from numba import cuda
    from numba.cuda import dispatcher

    dispatcher.get_current_device = _Device  # type: ignore[assignment]
    tool = ptxas()
    rows = []
    for module, name, types in launches:
        row: dict[str, Any] = {"kernel": f"{module.rsplit('.', 1)[-1]}.{name}",
                               "signature": ", ".join(str(t) for t in types)}  # fmt: skip
        func = getattr(importlib.import_module(module), name)
        options = {k: func.targetoptions[k] for k in ("fastmath", "launch_bounds")
                   if func.targetoptions.get(k)}  # fmt: skip
        row["block_max"] = getattr(func, "block_max", None)
        try:
            ptx, _ = cuda.compile_ptx(func.py_func, types, cc=CC, **options)
            if tool:
                row.update(assemble(ptx, tool))
        except Exception as exc:  # the compiler's complaint is the result
            lines = [s for s in str(exc).splitlines() if s.strip()]
            row.update(ok=False, error=lines[0][:300] if lines else type(exc).__name__)
            rows.append(row)
            continue
        local, shared = _memory(ptx)
        row.update(ok=True, local_bytes=local, shared_bytes=shared)
        if row["block_max"] is None:
            row.update(ok=False, error="its largest block is not declared (cuda_jit.kernel)")
        elif tool and row["registers"] * row["block_max"] > REGISTERS_PER_BLOCK:
            row.update(ok=False, error=f"{row['registers']} registers x {row['block_max']} "
                       f"threads exceed {REGISTERS_PER_BLOCK}")  # fmt: skip
        elif shared > STATIC_SHARED_BYTES:
            row.update(ok=False, error=f"{shared} bytes of static shared memory")
        rows.append(row)
    return rows


def nvvm_missing() -> str | None:
    """Why NVVM cannot be used here (None when it can)."""
    try:
        from numba import cuda

        def nothing(x):  # pragma: no cover - compiled, not run
            x[0] = 1

        cuda.compile_ptx(nothing, "void(float32[:])", cc=CC)
    except Exception as exc:
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    return None


def main(argv: list[str] | None = None) -> int:
    """Record under the simulator (a child process), compile here; print a table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", type=Path, help="write the rows here too")
    ap.add_argument("--record", type=Path, help=argparse.SUPPRESS)  # the child's job
    args = ap.parse_args(argv)
    if args.record:
        print(record(args.record))
        return 0
    from numba import config as numba_config

    if numba_config.ENABLE_CUDASIM:
        print("ptx-check: run without NUMBA_ENABLE_CUDASIM (it compiles for the real target)")
        return 2
    why = nvvm_missing()
    if why:
        print(f"ptx-check: no usable NVVM ({why}); install numba-cuda[cu13] (the dev extra)")
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "launches.pkl"
        env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
        cmd = [sys.executable, "-m", "ivy_gpu.benchmarks.ptx_check", "--record", str(path)]
        subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL)
        launches = pickle.loads(path.read_bytes())
    rows = compile_all(launches)
    for r in rows:
        if r["ok"]:
            regs = (f", {r['registers']} registers, {r['spill_bytes']} B spilled"
                    if "registers" in r else "")  # fmt: skip
            what = (f"block <= {r['block_max']}{regs}, local {r['local_bytes']} B, "
                    f"shared {r['shared_bytes']} B")  # fmt: skip
        else:
            what = f"FAILED: {r['error']}"
        print(f"{r['kernel']}({r['signature']}): {what}")
    if not ptxas():
        print("ptx-check: no ptxas (nvidia-cuda-nvcc): registers not checked")
    bad = [r for r in rows if not r["ok"]]
    print(
        f"ptx-check: {len(rows) - len(bad)} of {len(rows)} launches compile for sm_{CC[0]}{CC[1]}"
    )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
