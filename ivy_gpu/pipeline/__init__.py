"""Running the job: one video end to end, a batch of them, and what they write.

``analysis`` (grid, STIV, quality control, discharge and uncertainty of a stack),
``process`` (:func:`run_video` / :func:`process_video`: the stages, the one place failures
become results), ``outputs`` (tables, figures, ``results.json`` written last and read back),
``batch_csv`` (the batch CSV and the batch summary), ``batch`` (:class:`BatchOrchestrator`),
``executors`` (local with prefetch, Dask), ``lock`` (one writer per output folder),
``provenance`` (the result's fingerprint for safe resume) and ``validate`` (everything that
can fail before decoding).

May import: every part below it (core, kernels, hydraulics, scaffold, engines, stiv, frames,
report); never :mod:`ivy_gpu.site`, :mod:`ivy_gpu.synthetic`, the CLI or the benchmarks.
"""
