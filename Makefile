# Two commands matter to a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TCK_DEPS := tests/tck/target/.fetched

.PHONY: demo test lint typecheck opa policy-test unit tck tck-deps bench clean

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

.tools/bin/opa:
	GOBIN=$(CURDIR)/.tools/bin go install github.com/open-policy-agent/opa@$(OPA_VERSION)

opa: $(OPA_BIN)

demo: $(STAMP) $(OPA_BIN)
	$(BIN)/python -m connector.demo

lint: $(STAMP)
	$(BIN)/ruff check connector tests bench examples
	$(BIN)/ruff format --check connector tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

# The Rego policy library: `opa check` and its unit tests (`opa test`), with the real OPA.
policy-test: $(OPA_BIN)
	$(OPA_BIN) version | head -1
	$(OPA_BIN) check --strict policies
	$(OPA_BIN) test policies -v

unit: $(STAMP) $(TCK_DEPS) $(OPA_BIN)
	OPA_BIN=$(abspath $(OPA_BIN)) $(BIN)/pytest -q

# The whole DSP TCK against a connector in TCK mode; fails unless every mandatory test passes.
tck: $(STAMP) $(TCK_DEPS) $(OPA_BIN)
	$(BIN)/python tests/tck/run_tck.py

test: lint typecheck policy-test unit tck

bench: $(STAMP)
	$(BIN)/python bench/negotiation_latency.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache tests/tck/target build/tck
