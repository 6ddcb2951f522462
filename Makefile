# Two commands matter to a newcomer: `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
TCK_DEPS := tests/tck/target/.fetched

.PHONY: demo test lint typecheck unit tck tck-deps bench clean

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

demo: $(STAMP)
	$(BIN)/python -m connector.demo

lint: $(STAMP)
	$(BIN)/ruff check connector tests bench examples
	$(BIN)/ruff format --check connector tests bench examples

typecheck: $(STAMP)
	$(BIN)/mypy

unit: $(STAMP) $(TCK_DEPS)
	$(BIN)/pytest -q

# The whole DSP TCK against a connector in TCK mode; fails unless every mandatory test passes.
tck: $(STAMP) $(TCK_DEPS)
	$(BIN)/python tests/tck/run_tck.py

test: lint typecheck unit tck

bench: $(STAMP)
	$(BIN)/python bench/negotiation_latency.py

clean:
	rm -rf $(VENV) .mypy_cache .pytest_cache .ruff_cache tests/tck/target build/tck
