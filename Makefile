# Every target does its own set-up on a fresh machine: apt packages, the virtualenv, the
# control-plane build (cached in ~/.cache/modeldeploy and Go's build cache).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | sha256sum | cut -c1-12)
export PYTHONPATH := $(CURDIR)/hack/localcluster
# The control-plane build links kubectl here; it serves the tests and the demo when the machine has none.
LOCALCLUSTER_BIN := $(or $(LOCALCLUSTER_BIN_DIR),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/modeldeploy/localcluster)
export PATH := $(PATH):$(LOCALCLUSTER_BIN)

.PHONY: setup tools system-packages cluster-build cluster cluster-down lint test test-unit test-cluster test-e2e soak demo bench-archive bench-quality clean

setup: system-packages $(STAMP) cluster-build tools

tools:
	@bash hack/install-helm.sh >/dev/null
	@bash hack/install-healthcheck.sh >/dev/null
	@bash hack/install-prometheus-operator-crds.sh >/dev/null

system-packages:
	@bash hack/install-system-packages.sh

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[serve,dev]"
	rm -f $(VENV)/.installed-* && touch $@

cluster-build:
	@bash hack/localcluster/controlplane/build.sh >/dev/null
	@bash hack/localcluster/coredns/build.sh >/dev/null
	@bash hack/localcluster/prometheus/build.sh >/dev/null

## make cluster: the local cluster in the foreground; Ctrl-C removes it.
cluster: setup
	$(PY) -m localcluster up

cluster-down:
	$(PY) -m localcluster down

lint: $(STAMP)
	$(VENV)/bin/ruff check operator tests benchmarks hack/localcluster
	$(VENV)/bin/mypy
	$(VENV)/bin/mypy benchmarks/archive.py
	$(VENV)/bin/lint-imports

test-unit: $(STAMP)
	$(VENV)/bin/pytest tests/unit -q

test: setup lint
	$(VENV)/bin/pytest tests -q -ra --durations=60

## make soak: the rollout races of tests/e2e/test_rollout_races.py at nightly size (CI repeats each 2 times).
soak: setup
	MODELDEPLOY_SOAK_REPETITIONS=$${MODELDEPLOY_SOAK_REPETITIONS:-10} $(VENV)/bin/pytest tests/e2e/test_rollout_races.py -q -ra -s

demo: setup
	$(PY) hack/demo.py

bench-archive: $(STAMP)
	$(PY) benchmarks/archive.py archive --size-mib 2048

## make bench-quality: golden-set verdicts (exact and paired bounds) against naive thresholds, as JSON.
bench-quality: $(STAMP)
	$(PY) benchmarks/golden_set_quality.py

clean: cluster-down
	rm -rf .localcluster
