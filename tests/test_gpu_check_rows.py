"""Which engine variants ``make gpu-check`` measures, and where (no GPU needed)."""

from __future__ import annotations

from ivy_gpu.benchmarks import gpu_check as g


def test_every_per_sti_acf_kernel_is_a_variant_of_the_check():
    engines = g._engines(sim=True)
    assert engines[g.DIRECT_SIM].acf_kernel == "direct"
    assert engines[g.SHARED_SIM].acf_kernel == "shared"
    assert engines["gpu-sim+cuda-kernels"].acf_kernel == "fft"
    assert not engines["gpu-sim array code"].use_cuda_kernels
    assert set(g.PER_STI) == {"direct", "shared"}


def test_a_gpu_measures_each_variant_where_it_runs():
    """On a GPU: every ACF case and layout at P = 32; never the gradient or long lines (the
    cuFFT variant's code, measured once). Under the simulator: its time-boxed subset."""
    p, long_p = g._sizes(False)["p"], g._sizes(False)["long_p"]
    for label in (g.DIRECT, g.SHARED):
        for case, _, _ in g.agreement_cases(False):
            assert not g._skipped(label, "acf", p, False, case)
        for layout in ("grid", "scattered", "row"):
            assert not g._skipped(label, "acf", p, False, layout=layout)
        assert g._skipped(label, "gradient", p, False)
        assert g._skipped(label, "acf", long_p, False)
    assert not g._skipped("cupy+cuda-kernels", "gradient", long_p, False)
    sp = g._sizes(True)["p"]
    assert not g._skipped(g.DIRECT_SIM, "acf", sp, True, "acf")
    assert g._skipped(g.DIRECT_SIM, "acf", sp, True, "acf, blur sigma 1")
    assert not g._skipped(g.DIRECT_SIM, "acf", sp, True, layout="row")
    assert g._skipped(g.SHARED_SIM, "acf", sp, True, "acf")  # its stage line rehearses it
    assert g._skipped(g.SHARED_SIM, "acf", sp, True, layout="grid")
