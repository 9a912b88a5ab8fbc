# The two commands of the README. Both install into .venv on first use (scripts/bootstrap.sh).
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: demo test bootstrap bench bench-check

bootstrap:
	@XRSEG_VENV=$(VENV) scripts/bootstrap.sh

demo: bootstrap
	$(VENV)/bin/xrseg demo --out out/demo

test: bootstrap
	$(PY) -m pytest -q

bench: bootstrap
	$(PY) -m bench.synthetic_accuracy
	$(PY) -m bench.pipeline_latency

# Which bench/results files describe code that changed after the commit they were measured on.
bench-check:
	@python3 scripts/bench_check.py
