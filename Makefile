# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
VENV := .venv
export TF_USE_LEGACY_KERAS := 1
export TF_CPP_MIN_LOG_LEVEL := 2

.PHONY: venv demo test test-slow lock bench bench-scale bench-serving notebooks bench-catalog clean

venv:
	@scripts/bootstrap.sh

demo: venv
	$(VENV)/bin/twotower demo

# Two or more workers (pytest-xdist, at most 4): each test file on one worker, the files on
# the shared pipeline run together (tests/conftest.py); `-p no:xdist` runs them in one process.
test: venv
	$(VENV)/bin/python -m pytest -m "not slow" -n auto --maxprocesses 4

# The slow tests: the fault tests (FAULTS.md: a run killed and resumed, two pipelines at once
# under one root, a full disk while pushing, a model the push gate refuses, a failing
# component) and the compiled Vertex AI pipeline executed task by task here
# (tests/test_vertex_executed.py and the full config's, tests/test_vertex_executed_full.py)
# and the hyperparameter search: CI runs them (docs/testing.md has the times), two files at a
# time: most of a pipeline's time is one core's (Beam's DirectRunner, TFX's launches, polls).
test-slow: venv
	$(VENV)/bin/python -m pytest -m slow -n 2

# The benchmark on ../shared (MovieLens and Ta-Feng, the shared protocols) and on the public
# log fetched by `scripts/fetch_public_log.py` into ../public-data (skipped, in one line, until
# it is fetched); see BENCHMARKS.md. `make bench DATASET=ta-feng` (or movielens,
# complete-journey) runs one of them.
DATASET ?= all
bench: venv
	$(VENV)/bin/python scripts/bench.py --dataset $(DATASET)

# How data preparation and the pipeline grow with the data (synthetic 100k/1M/10M purchases).
bench-scale: venv
	$(VENV)/bin/python scripts/bench_scale.py

# Serving throughput of the demo's model (run `make demo` first): signatures from 1-8 threads,
# `twotower recommend` from 1 and 2 processes.
bench-serving: venv
	$(VENV)/bin/python scripts/bench_serving.py --model runs/b2b-demo

# Execute both notebooks (the quickstart trains a pipeline: minutes) and render them to
# docs/notebooks/*.html; tests/test_notebooks.py checks the pages match the notebooks.
notebooks: venv
	nice -n 10 $(VENV)/bin/python scripts/render_notebooks.py

# Exact search and ScaNN over synthetic catalogs of 10k, 100k and 1M candidates (a few
# minutes; BENCHMARKS.md, "Catalogs up to a million candidates").
bench-catalog: venv
	nice -n 10 $(VENV)/bin/python scripts/bench_catalog.py

# Re-resolve the lock file (needs network; ~1 min with uv).
lock: venv
	$(VENV)/bin/uv pip compile requirements.in --python-version 3.10 \
	  --python-platform x86_64-manylinux_2_28 -o requirements.lock

clean:
	rm -rf runs .pytest_cache
