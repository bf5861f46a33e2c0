# Two entry points for a fresh machine with only python3 and make:
#   make demo   -- create .venv, install, run the main job on generated data
#   make test   -- create .venv, install with dev extras, run the whole test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip

.PHONY: demo test lint bench clean gpu-check wheels ptx-check

# .base: the package alone (what the demo needs); .installed: with the dev extras (tests).
$(VENV)/.base: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -e .
	touch $@

$(VENV)/.installed: $(VENV)/.base
	$(PIP) install -q -e ".[dev]"
	touch $@

demo: $(VENV)/.base
	$(VENV)/bin/ivy-gpu demo

test: $(VENV)/.installed
	$(PY) -m pytest -q
	$(PY) -m pytest -q -p no:cacheprovider --doctest-modules ivy_gpu

# Every CUDA kernel compiled for sm_90 and assembled (NVVM and ptxas from the dev extra), with
# the argument types the probe and the engine launch it with: what only a GPU's compiler
# refuses, found without a GPU.
ptx-check: $(VENV)/.installed
	env -u NUMBA_ENABLE_CUDASIM $(PY) -m ivy_gpu.benchmarks.ptx_check

# On a lent GPU machine (no registry): a fresh venv over the machine's python3 (its CuPy and
# CUDA libraries), with the carried wheels (`make wheels` here) installed on top, so what runs
# is what the GPU extras pin (NumPy below 2.5, numba-cuda); then every check with its own time
# limit, the report in $OUT/gpu_check.md. GPU_CHECK_SIM=1 rehearses it here with the simulator.
GPU_PY   ?= python3
GPU_VENV ?= /tmp/ivy_gpu_venv
GPU_OUT  ?= $(if $(OUT),$(OUT),$(CURDIR)/gpu_check_output)
gpu-check:
ifeq ($(GPU_CHECK_SIM),1)
	$(MAKE) $(VENV)/.installed
	$(PY) -m ivy_gpu.benchmarks.gpu_check --sim --repo $(CURDIR) --out $(GPU_OUT)
else
	rm -rf $(GPU_VENV)
	$(GPU_PY) -m venv --system-site-packages --without-pip $(GPU_VENV)
	$(GPU_VENV)/bin/python -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
		.whl/*.whl
	cd /tmp && $(GPU_VENV)/bin/python -m ivy_gpu.benchmarks.gpu_check --repo $(CURDIR) \
		--out $(GPU_OUT)
endif

# Wheels a GPU machine without a registry needs on top of its python3 (cp312, x86-64): ivy_gpu,
# PyAV, Rocket-FFT, h5netcdf (the NetCDF outputs; its image has xarray and h5py), the GPU
# extras' pins the machine may lack (NumPy < 2.5, numba-cuda), and PyNvVideoCodec for
# gpu-check's NVDEC probe, slimmed from 27 to 5 MB (benchmarks/slim_wheel.py).
# About 60 MB (the device tool carries 64 MiB): carry `.whl` (git-ignored) with the run.
WHEEL_PLATFORMS = --only-binary=:all: --python-version 3.12 --implementation cp \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 \
	--platform manylinux_2_24_x86_64 --platform manylinux_2_17_x86_64 \
	--platform manylinux2014_x86_64
wheels: $(VENV)/.base
	rm -rf .whl && mkdir -p .whl
	$(PYTHON) -m pip wheel -q --no-deps . -w .whl
	$(PYTHON) -m pip download -q --no-deps $(WHEEL_PLATFORMS) -d .whl av rocket-fft \
		"numpy>=2.0,<2.5" "numba-cuda>=0.20,<0.31" "h5netcdf>=1.3" "pynvvideocodec==2.2.4"
	$(PY) -m ivy_gpu.benchmarks.slim_wheel .whl/pynvvideocodec-*.whl
	du -ch .whl/*.whl | tail -1

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .

bench: $(VENV)/.installed
	$(VENV)/bin/ivy-gpu bench

clean:
	rm -rf $(VENV) build *.egg-info demo_output bench_output gpu_check_output
