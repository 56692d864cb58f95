# Three entry points (see README): `make demo`, `make test` and `make up` (with `make down`).
# Everything else is a step of those.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
export AIRFLOW_HOME := $(CURDIR)/.airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__CORE__UNIT_TEST_MODE := False
export PYTHONPATH := $(CURDIR)/plugins:$(CURDIR)

.PHONY: demo test up down venv services airflow-db lint bench clean

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip uv
	$(BIN)/uv pip install -q --python $(BIN)/python -r requirements.txt -r requirements-dev.txt
	$(BIN)/uv pip install -q --python $(BIN)/python --no-deps -e .
	touch $@

airflow-db: venv
	$(BIN)/airflow db migrate >/dev/null

services:
	scripts/test-services.sh

demo: airflow-db
	$(BIN)/python -m dbopt.demo

# Airflow's real components on this machine (api-server on 127.0.0.1, scheduler, dag-processor,
# triggerer), PostgreSQL metadata database when one answers, plus the Cloud Run stand-in, its local data
# plane and Prometheus (README "See a canary work locally"); prints the URLs and the login.
up: venv services
	$(BIN)/python -m dbopt.stack up

down:
	$(BIN)/python -m dbopt.stack down

# Tests in TEST_WORKERS processes (pytest-xdist, a file per process at a time), then the `serial` ones
# alone: those reset server-wide statistics or judge timings. Both parts always run; either failing fails.
TEST_WORKERS ?= 2
test: venv services airflow-db
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile -m "not serial"; parallel=$$?; \
	$(BIN)/python -m pytest -m serial; serial=$$?; \
	test $$parallel -eq 0 && test $$serial -eq 0

lint: venv
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

bench: venv services
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .airflow
