# The README's two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/airflow-3.3.2-py3.11.txt
export AIRFLOW_HOME ?= $(CURDIR)/.airflow

VENV2 := .venv-airflow2
CONSTRAINTS2 := constraints/airflow-2.11.2-py3.11.txt

.PHONY: install test lint demo bench clean test-airflow2

$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[test]"
	touch $@

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

# The suite on the oldest Airflow we support, in its own venv (tests needing Airflow 3 skip with the reason).
$(VENV2)/bin/.installed: pyproject.toml $(CONSTRAINTS2)
	$(PYTHON) -m venv $(VENV2)
	$(VENV2)/bin/pip install -q --upgrade pip
	$(VENV2)/bin/pip install -q -c $(CONSTRAINTS2) -e ".[test]"
	touch $@

test-airflow2: $(VENV2)/bin/.installed
	bash scripts/ensure-postgres.sh
	$(VENV2)/bin/python -m pytest -p no:cacheprovider

demo: install
	$(BIN)/python -m peak_provider.demo

# Every benchmark scenario, 3 runs each, side by side with the naive loop; rewrites benchmarks/RESULTS.md.
bench: install
	bash scripts/ensure-postgres.sh
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[test,bench]"
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(VENV2) .airflow .demo
