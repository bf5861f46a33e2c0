"""Benchmark suite of ivy_gpu (installed as ``ivy_gpu.benchmarks``)."""
