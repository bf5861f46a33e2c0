"""Importing the package is cheap and never touches CUDA."""

import subprocess
import sys


def test_import_does_not_load_gpu_or_heavy_modules():
    code = (
        "import sys, ivy_gpu; "
        "heavy = [m for m in ('cupy', 'numba', 'numba.cuda', 'cv2', 'av') if m in sys.modules]; "
        "print(heavy); assert not heavy, heavy; "
        "assert callable(ivy_gpu.process_video) and callable(ivy_gpu.stiv_exhaustive)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
