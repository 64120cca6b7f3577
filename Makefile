# The README's two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/airflow-3.3.2-py3.11.txt
export AIRFLOW_HOME ?= $(CURDIR)/.airflow

.PHONY: install test lint demo clean

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
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python -m peak_provider.demo

clean:
	rm -rf $(VENV) .airflow .demo
