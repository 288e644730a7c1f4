# The two commands that matter: `make demo` (the main job, once it exists) and `make test`.
# Every target installs what it needs first; nothing here assumes a hand-installed tool.
SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV := .venv
PY := $(VENV)/bin/python
MODELOPS_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/modelops/devcluster
export MODELOPS_CACHE
export PATH := $(abspath $(VENV)/bin):$(MODELOPS_CACHE)/bin:$(PATH)
PYTEST_ARGS ?=

.PHONY: demo help install system-deps cluster-build images cluster-up cluster-down cluster-status \
        test unit e2e lint typecheck bench campaign clean run install-crds crds

help:
	@echo "make demo          the main job: a better model promoted, a worse one rolled back, a drifted one retrained (~8 min)"
	@echo "make test          install everything needed, then lint, unit and end-to-end tests"
	@echo "make images        build the OCI images into dist/images/ (no Docker daemon, no registry)"
	@echo "make cluster-up    start a local Kubernetes cluster: control plane and a real node"
	@echo "make cluster-down  stop it, leaving no process behind"
	@echo "make bench         run the benchmarks under benchmarks/"
	@echo "make campaign      the fault campaign: 50 faults during live challenges (~30 min)"
	@echo "make run           run the operator locally against the current KUBECONFIG (all namespaces)"
	@echo "make install-crds  apply crds/ to the current KUBECONFIG"
	@echo "make crds          regenerate crds/ from the pydantic models"

install: $(VENV)/.installed $(VENV)/.dataplane

$(VENV)/.installed: pyproject.toml
	@echo ">> creating $(VENV) and installing modelops (editable) with its dev tools"
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

# The data plane (dataplane/, Go): one static binary, installed as modelops-sidecar and
# modelops-router beside the Python commands. Rebuilt when a file under dataplane/ changes
# (go's build cache makes that quick), and after a reinstall of the venv.
DATAPLANE_FILES := $(shell find dataplane -type f 2>/dev/null)
$(VENV)/.dataplane: $(VENV)/.installed $(DATAPLANE_FILES)
	@echo ">> building the data plane (dataplane/) into $(VENV)/bin"
	bash dataplane/build.sh $(VENV)/bin/modelops-proxy
	ln -sf modelops-proxy $(VENV)/bin/modelops-sidecar
	ln -sf modelops-proxy $(VENV)/bin/modelops-router
	touch $@

system-deps:
	@bash scripts/ensure-system-packages.sh

cluster-build:
	@bash scripts/devcluster-build.sh

# The project's images (and the dev cluster's: pause, CoreDNS, Prometheus, built from the
# binaries cluster-build makes), reproducibly, as docker-archive tars.
images: system-deps cluster-build
	@bash images/build.sh

cluster-up: install system-deps cluster-build images
	$(VENV)/bin/modelops-devcluster up

cluster-down: install
	$(VENV)/bin/modelops-devcluster down

cluster-status: install
	$(VENV)/bin/modelops-devcluster status

lint: install
	$(VENV)/bin/ruff check .

typecheck: install
	$(VENV)/bin/mypy operator/modelops_operator serving/modelops_serving tools/devcluster/modelops_devcluster

unit: install system-deps
	$(PY) -m pytest -m "not e2e" $(PYTEST_ARGS)

e2e: install system-deps cluster-build images
	$(PY) -m pytest -m e2e $(PYTEST_ARGS)

# One pytest run, so its closing line counts every test; exit code 5 (no tests) fails it.
test: install system-deps cluster-build images lint typecheck
	$(PY) -m pytest $(PYTEST_ARGS)

# A dev cluster with a real node running the project's images, Prometheus in the cluster, the
# operator installed by Helm and a load generator; writes demo-report/index.html and stops
# everything it started.
demo: install system-deps cluster-build images
	$(PY) -m modelops_demo --report-dir demo-report

# The fault campaign (tests/e2e/realnode/test_fault_campaign.py): the operator SIGKILLed and
# Prometheus restarted at random moments of live challenges; too long for every CI run.
CAMPAIGN_TRIALS ?= 50
campaign: install system-deps cluster-build images
	MODELOPS_FAULT_CAMPAIGN=$(CAMPAIGN_TRIALS) $(PY) -m pytest -m e2e -s -p no:cacheprovider \
	  tests/e2e/realnode/test_fault_campaign.py

# As modules from the repository root, so a benchmark can import the test harness (tests/harness).
bench: install system-deps cluster-build
	@set -e; for b in benchmarks/bench_*.py; do echo ">> $$b"; m=$${b%.py}; $(PY) -m $${m//\//.}; done

run: install
	@echo ">> kopf run --standalone --all-namespaces -m modelops_operator.main (KUBECONFIG=$${KUBECONFIG:-~/.kube/config})"
	$(VENV)/bin/kopf run --standalone --all-namespaces -m modelops_operator.main

install-crds:
	@echo ">> applying crds/ (server-side) to KUBECONFIG=$${KUBECONFIG:-~/.kube/config}"
	kubectl apply --server-side --field-manager=modelops -f crds/

crds: install
	$(PY) -m modelops_operator.api.crdgen

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache bench-results
