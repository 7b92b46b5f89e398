# deepseek-operator — `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help
PY_SYSTEM ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help
help: ## Show this help
	@awk 'BEGIN {FS = ":.*##"; printf "Targets:\n"} /^[a-zA-Z0-9_-]+:.*##/ {printf "  \033[36m%-18s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(STAMP): pyproject.toml
	$(PY_SYSTEM) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

.PHONY: venv
venv: $(STAMP) ## Create .venv with the operator and its dev tools

.PHONY: system-deps
system-deps: ## Install Debian packages the e2e rig needs (prometheus)
	@test -x /usr/bin/prometheus || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null)

.PHONY: lint
lint: $(STAMP) ## ruff and mypy --strict
	$(VENV)/bin/ruff check operator tests e2e
	$(VENV)/bin/mypy

.PHONY: crds
crds: $(STAMP) ## Generate crds/ from the API models (operator/deepseek_operator/api)
	$(VENV)/bin/deepseek-operator crd --output crds/deepseek-operator.io_deepseekdeployments.yaml

.PHONY: tools
tools: $(STAMP) ## Build (once, cached outside the checkout) etcd, Kubernetes, kwok and helm from Go modules
	$(PY) -m e2e.cluster build >/dev/null

.PHONY: cluster-up
cluster-up: tools ## Start the local control plane (reuses a running one); prints the kubeconfig path
	$(PY) -m e2e.cluster up

.PHONY: cluster-down
cluster-down: $(STAMP) ## Stop every control-plane process by PID and remove its state
	$(PY) -m e2e.cluster down

.PHONY: test-unit
test-unit: $(STAMP) ## Unit tests only (no cluster)
	$(VENV)/bin/pytest tests -q

.PHONY: test
test: $(STAMP) system-deps tools ## Everything on a fresh machine: install, build the control plane, unit + e2e tests
	$(VENV)/bin/pytest -q

.PHONY: demo
demo: $(STAMP) tools ## The main job: control plane, operator, sample DeepSeekDeployments reconciled
	@echo "demo: the controller lands with issue 4; for now this brings the control plane up and down"
	$(PY) -m e2e.cluster up
	$(PY) -m e2e.cluster down

.PHONY: bench-autoscaler
bench-autoscaler: $(STAMP) ## Replay a 24 h QPS trace through our policy and the HPA; table, JSON and PNG in e2e/bench/out/
	$(PY) -m e2e.bench.autoscaler --out e2e/bench/out
