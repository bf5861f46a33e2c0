"""Tunables in one place: chunk budgets, FFT threads, GPU launch shapes.

Tests shrink these (monkeypatch) so chunk boundaries are exercised on tiny inputs.
"""

from __future__ import annotations

import os

#: Working-memory budget of one STI chunk on the CPU backends, bytes.
CPU_CHUNK_BYTES: int = 384 * 2**20

#: Working-memory budget of one STI chunk on the GPU backend, bytes.
GPU_CHUNK_BYTES: int = 2 * 2**30

#: Hard upper bound on (node, angle) pairs per chunk, whatever the budget.
MAX_CHUNK_PAIRS: int = 65536

#: Threads used by SciPy's FFT on the CPU backends.
FFT_WORKERS: int = os.cpu_count() or 1
