# The two commands of the README. Both install into .venv on first use (scripts/bootstrap.sh).
VENV ?= .venv
# ONNX Runtime's CPU build (`cpu`) or GPU build (`gpu`), never both; `dev` for the tests.
EXTRAS ?= cpu,dev
PY := $(VENV)/bin/python

.PHONY: demo test bootstrap bench bench-check check-install

bootstrap:
	@XRSEG_VENV=$(VENV) XRSEG_EXTRAS=$(EXTRAS) scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/xrseg demo --out out/demo

test: bootstrap
	$(PY) -m pytest -q

# The benchmarks also need the `bench` extra (matplotlib, for their plots).
bench:
	@XRSEG_VENV=$(VENV) XRSEG_EXTRAS=$(EXTRAS),bench scripts/bootstrap.sh
	$(PY) -m bench.synthetic_accuracy
	$(PY) -m bench.pipeline_latency

# Which bench/results files describe code that changed after the commit they were measured on.
bench-check:
	@python3 scripts/bench_check.py

# Which ONNX Runtime build each extra installs (resolution from the package index, plus a real
# install of the runtime part in a throw-away venv): scripts/check_install.py.
check-install:
	python3 scripts/check_install.py
