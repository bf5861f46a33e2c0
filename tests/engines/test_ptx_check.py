"""Every CUDA kernel compiled for a real GPU (sm_90) by the compiler the GPU extras install.

The simulator runs the kernels' Python source and cannot see what only the CUDA target
refuses. ``make ptx-check`` records the launches the probe and the engine make (under the
simulator), compiles each kernel with NVVM for sm_90 with the argument types it was
launched with, assembles it with ptxas and checks its registers against its largest block.
The dev extra installs NVVM and ptxas (``numba-cuda[cu13]``, ``nvidia-cuda-nvcc``), so this
runs in CI; it needs no GPU.
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(
    sys.platform != "linux" or platform.machine() != "x86_64",
    reason="NVIDIA's compiler wheels (NVVM, ptxas) are built for Linux x86-64",
)

KERNELS = Path(__file__).resolve().parents[2] / "kernels"


def _env() -> dict[str, str]:
    """This test process runs the simulator; the check compiles for the real target."""
    return {k: v for k, v in os.environ.items() if k != "NUMBA_ENABLE_CUDASIM"}


def _declared() -> set[str]:
    """Every kernel of the package: ``module.name`` of each ``@cuda_jit.kernel`` function."""
    found = set()
    for path in KERNELS.glob("*.py"):
        for name in re.findall(r"@cuda_jit\.kernel\([^)]*\)\ndef (\w+)\(", path.read_text()):
            found.add(f"{path.stem}.{name}")
    return found


def test_every_kernel_compiles_for_sm90_and_gets_its_registers(tmp_path):
    out = tmp_path / "ptx.json"
    done = subprocess.run(
        [sys.executable, "-m", "ivy_gpu.benchmarks.ptx_check", "--json", str(out)],
        env=_env(), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    rows = json.loads(out.read_text())
    # every kernel the package declares was launched by the probe or the engine, and compiled
    assert {r["kernel"] for r in rows} == _declared()
    assert len(_declared()) >= 9
    for r in rows:
        assert r["ok"], r
        assert r["registers"] * r["block_max"] <= 65536, r  # ptxas ran
        assert r["shared_bytes"] <= 48 * 1024, r
    shared = next(r for r in rows if r["kernel"] == "acf_shared_device._shared_kernel")
    assert shared["block_max"] == 512 and shared["registers"] <= 128


BAD = """
import numpy as np
from numba import cuda

from ivy_gpu.kernels import cuda_jit, rays_device

WIN = 64


@cuda_jit.kernel(128)
def other_modules_constant(out):
    f = cuda.shared.array(rays_device.THETA_MAX, np.float32)
    f[0] = 1.0
    out[0] = f[0]


@cuda_jit.kernel(128)
def own_constant(out):
    f = cuda.shared.array(WIN, np.float32)
    f[0] = 1.0
    out[0] = f[0]


@cuda.jit
def undeclared(out):
    out[0] = 1.0
"""


def test_the_check_names_what_nvvm_or_a_launch_would_refuse(tmp_path):
    """A shared array sized by another module's constant (what the direct kernel had until
    this check: the simulator ran it, NVVM refuses it), a kernel without its largest block,
    and registers a block cannot get."""
    (tmp_path / "bad_kernels.py").write_text(textwrap.dedent(BAD))
    code = textwrap.dedent('''
        import json
        from numba import types
        from ivy_gpu.benchmarks import ptx_check
        sig = (types.float32[::1],)
        names = ("other_modules_constant", "own_constant", "undeclared")
        rows = ptx_check.compile_all([("bad_kernels", n, sig) for n in names])
        real = ptx_check.assemble
        ptx_check.assemble = lambda ptx, tool: {**real(ptx, tool), "registers": 600}
        rows += ptx_check.compile_all([("bad_kernels", "own_constant", sig)])
        print(json.dumps(rows))
    ''')  # fmt: skip
    env = {**_env(), "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path])}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    attr, own, undeclared, greedy = json.loads(done.stdout.splitlines()[-1])
    assert not attr["ok"] and "shared.array" in attr["error"]
    assert own["ok"] and own["block_max"] == 128 and own["shared_bytes"] == 256
    assert not undeclared["ok"] and "not declared" in undeclared["error"]
    assert not greedy["ok"] and "600 registers x 128 threads exceed 65536" in greedy["error"]
