# The README's two commands: `make demo` and `make test`. Both set everything up on a fresh machine.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
CONSTRAINTS := constraints/airflow-3.3.2-py3.11.txt
export AIRFLOW_HOME ?= $(CURDIR)/.airflow

VENV2 := .venv-airflow2
CONSTRAINTS2 := constraints/airflow-2.11.2-py3.11.txt

.PHONY: install test test-fast lint demo bench clean test-airflow2

# A venv with the provider and its test extras: $(1) the venv, $(2) the constraints file, $(3) the extras
# (default: test).
define make_venv
	$(PYTHON) -m venv $(1)
	$(1)/bin/pip install -q --upgrade pip
	$(1)/bin/pip install -q -c $(2) -e ".[$(or $(3),test)]"
	touch $@
endef

# The Airflow 3.3 venv also gets the optional [openlineage] extra and the [celery] extra (the CeleryExecutor
# tests); .venv-airflow2 runs without them, and its Celery tests skip.
VENV_EXTRAS := test,openlineage,celery
$(BIN)/.installed: pyproject.toml $(CONSTRAINTS)
	$(call make_venv,$(VENV),$(CONSTRAINTS),$(VENV_EXTRAS))

install: $(BIN)/.installed

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install lint
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-redis.sh
	bash scripts/ensure-chromium.sh
	$(BIN)/python -m pytest

# For iterating: the suite without the `slow` tests (Airflow processes, the UI, big streams) and without lint.
test-fast: install
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-redis.sh
	@start=$$(date +%s%N); $(BIN)/python -m pytest -m "not slow"; status=$$?; \
	ms=$$(( ($$(date +%s%N) - start) / 1000000 )); \
	echo "make test-fast: $$((ms / 1000)).$$((ms % 1000 / 100)) s wall time"; exit $$status

# The suite on the oldest Airflow we support, in its own venv (tests needing Airflow 3 skip with the reason).
$(VENV2)/bin/.installed: pyproject.toml $(CONSTRAINTS2)
	$(call make_venv,$(VENV2),$(CONSTRAINTS2))

test-airflow2: $(VENV2)/bin/.installed
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-redis.sh
	$(VENV2)/bin/python -m pytest -p no:cacheprovider

demo: install
	$(BIN)/python -m peak_provider.demo

# Every benchmark scenario, 3 runs each (scenario 5: 1), side by side with the naive loop; rewrites
# benchmarks/RESULTS.md. Scenario 5 starts a throwaway redis-server.
$(BIN)/.bench: $(BIN)/.installed
	$(BIN)/pip install -q -c $(CONSTRAINTS) -e ".[test,bench]"
	touch $@

bench: $(BIN)/.bench
	bash scripts/ensure-postgres.sh
	bash scripts/ensure-redis.sh
	$(BIN)/python benchmarks/run.py

clean:
	rm -rf $(VENV) $(VENV2) .airflow .demo
