# The two set-up commands: `make demo` (main job on the default data) and `make test`.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.clareps-installed

.PHONY: demo test test-avx2 venv bench docs clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q torch==2.13.0          # the CPU wheel on local disk; first, so nothing pulls a CUDA build
	$(PY) -m pip install -q --no-deps animal-mnist==0.4  # it declares tensorflow, which we do not need
	$(PY) -m pip install -q --no-deps torchattacks==3.5.1 imagecorruptions-imaug==1.1.5 pyautoattack==0.2  # they declare torchvision / opencv-python; their real deps (scipy, numba, opencv-python-headless) are in pyproject; pyautoattack (the reference AutoAttack) needs only torch
	$(PY) -m pip install -q -e '.[dev,docs]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/clareps demo

test: $(STAMP)
	$(PY) -m pytest

# The suite as a CPU without AVX-512 runs it (other convolution kernels, emulated bf16), on any x86 CPU.
test-avx2: $(STAMP)
	ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 $(PY) -m pytest

# The documentation site, into site/ (fails on a broken link or a missing API reference).
docs: $(STAMP)
	PYTHONPATH=$(CURDIR)/src NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

bench: $(STAMP)
	$(PY) benchmarks/teacher_step.py

clean:
	rm -rf $(VENV) runs site
