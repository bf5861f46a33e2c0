"""Command-line interface of ivy_gpu (installed as ``ivy_gpu.cli``)."""
