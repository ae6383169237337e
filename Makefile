# initlab — the two commands of README.md are `make demo` and `make test`.
# Every target creates the virtual environment on first use and installs what it needs:
# PyTorch first (on this project's machines pip finds the CPU build on local disk; see README
# "Set up" for other machines), then initlab.
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.initlab-installed
FASHION := /usr/share/datasets/fashion-mnist
TORCH_PIN ?= torch==2.13.0

.PHONY: install install-ray demo test test-slow lint data bench clean

# `pip install -e .` also compiles src/initlab/_mkl_intel_cpu_true.c in place (setup.py; optional:
# without a C compiler the install succeeds and initlab.mkl_dispatch says `not built`).
$(STAMP): pyproject.toml setup.py src/initlab/_mkl_intel_cpu_true.c
	@test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q $(TORCH_PIN)
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

install: $(STAMP)

# Ray is an optional extra (initlab[ray]); CI installs it to run a real sweep on a local Ray.
install-ray: $(STAMP)
	$(PY) -m pip install -q -e '.[dev,ray]'

# Fashion-MNIST comes from the Debian package on machines of this kind; elsewhere initlab
# downloads it itself (checksummed) on first use.
data:
	@test -d $(FASHION) || { command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ] \
		&& (apt-get install -y -q dataset-fashion-mnist || (apt-get update -q && apt-get install -y -q dataset-fashion-mnist)) \
		|| echo "note: could not install dataset-fashion-mnist; initlab will try to download Fashion-MNIST"; }

demo: $(STAMP) data
	$(VENV)/bin/initlab compare --out results/demo

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

test: $(STAMP) lint
	$(VENV)/bin/pytest -q -n 2 -m "not slow"

test-slow: $(STAMP) data
	$(VENV)/bin/pytest -q -m slow

bench: $(STAMP) data
	$(PY) benchmarks/bench_compare.py

clean:
	rm -rf $(VENV) results .pytest_cache .ruff_cache
