# Asgard: `make demo` runs the churn pipeline end to end on the embedded default; `make test` tests it.
SHELL := /bin/bash
PY_VERSION ?= python3.11
VENV ?= $(CURDIR)/.venv
BIN := $(VENV)/bin
PYTHON := $(BIN)/python

export ASGARD_HOME ?= $(CURDIR)/.asgard
export AIRFLOW_HOME ?= $(ASGARD_HOME)/airflow
export AIRFLOW__CORE__DAGS_FOLDER := $(CURDIR)/dags
export AIRFLOW__CORE__PLUGINS_FOLDER := $(CURDIR)/plugins
export AIRFLOW__CORE__LOAD_EXAMPLES := False
export AIRFLOW__COSMOS__ENABLE_TELEMETRY := False
export DO_NOT_TRACK := 1
export SCARF_ANALYTICS := false
# Embedded sources written by `make data` (connections come from the environment, never from configs).
export AIRFLOW_CONN_ASGARD_CUSTOMERS_DB ?= {"conn_type": "sqlite", "host": "$(ASGARD_HOME)/sources/customers.db"}
export AIRFLOW_CONN_ASGARD_TRANSACTIONS_DB ?= {"conn_type": "sqlite", "host": "$(ASGARD_HOME)/sources/transactions.db"}
# The fraud detection example's card register and payment processor (python -m asgard_demo.fraud).
export AIRFLOW_CONN_ASGARD_CARDS_DB ?= {"conn_type": "sqlite", "host": "$(ASGARD_HOME)/sources/fraud/cards.db"}
export AIRFLOW_CONN_ASGARD_PAYMENTS_DB ?= {"conn_type": "sqlite", "host": "$(ASGARD_HOME)/sources/fraud/payments.db"}
# The patient readmission example's EMR and laboratory system (python -m asgard_demo.readmission), and the secret
# its Silver step salts the pseudonymous patient key with. A demo value only: production keeps the Variable
# asgard_pseudonym_secret in a secrets backend.
export AIRFLOW_CONN_ASGARD_EMR_DB ?= {"conn_type": "sqlite", "host": "$(ASGARD_HOME)/sources/readmission/emr.db"}
export AIRFLOW_CONN_ASGARD_LABS_DB ?= {"conn_type": "sqlite", "host": "$(ASGARD_HOME)/sources/readmission/labs.db"}
export AIRFLOW_VAR_ASGARD_PSEUDONYM_SECRET ?= demo-only-pseudonym-secret
# The retail examples' stores, catalog, daily sales and promotions (python -m asgard_demo.demand), read by the
# retail_catalog and demand_forecasting pipelines.
export AIRFLOW_CONN_ASGARD_RETAIL_DB ?= {"conn_type": "sqlite", "host": "$(ASGARD_HOME)/sources/demand/retail.db"}
# The demo's support API (asgard_demo.support_api), serving the generated tickets on 127.0.0.1.
export ASGARD_SUPPORT_API_PORT ?= 8765
export AIRFLOW_CONN_ASGARD_SUPPORT_API ?= {"conn_type": "http", "host": "http://127.0.0.1:$(ASGARD_SUPPORT_API_PORT)"}

# The demo data is as of today (UTC), so the runs a scheduler creates for an unpaused DAG find data.
DEMO_DATE ?= $(shell date -u +%F)
STAMP := $(VENV)/.installed

.PHONY: help install manifests system-deps data airflow-db airflow demo report test test-fast lint validate clean bench

help:
	@echo "make demo      set up everything and run the churn pipeline end to end (embedded, no servers)"
	@echo "make airflow   run Airflow (UI, scheduler, LocalExecutor on PostgreSQL) + MLflow UI with the demo DAGs"
	@echo "make test      unit tests + end-to-end pipeline tests"
	@echo "make validate  check every include/pipelines/*.yaml without Airflow running"
	@echo "make lint      ruff + mypy"
	@echo "make bench     benchmarks (end to end vs a bare script, parse time, throughput); see docs/performance.md"

system-deps:
	@./.ci/system-deps

$(STAMP): requirements.lock plugins/asgard_provider/pyproject.toml demo/pyproject.toml
	@test -x $(PYTHON) || $(PY_VERSION) -m venv $(VENV)
	$(PYTHON) -m pip install -q uv
	$(BIN)/uv pip install --python $(PYTHON) -r requirements.lock
	$(BIN)/uv pip install --python $(PYTHON) --no-deps -e plugins/asgard_provider -e demo
	@touch $(STAMP)

install: system-deps $(STAMP) manifests

# dbt manifests are built here, never while the DAG processor parses a DAG file (a no-op when up to date).
manifests: $(STAMP)
	$(BIN)/asgard dbt compile

data: $(STAMP)
	$(PYTHON) -m asgard_demo.data --out $(ASGARD_HOME)/sources --as-of $(DEMO_DATE)
	$(PYTHON) -m asgard_demo.fraud --out $(ASGARD_HOME)/sources/fraud --as-of $(DEMO_DATE)
	$(PYTHON) -m asgard_demo.readmission --out $(ASGARD_HOME)/sources/readmission --as-of $(DEMO_DATE)
	$(PYTHON) -m asgard_demo.demand --out $(ASGARD_HOME)/sources/demand --as-of $(DEMO_DATE)

airflow-db: $(STAMP)
	$(BIN)/airflow db migrate > $(ASGARD_HOME)/airflow-db-migrate.log 2>&1 || (cat $(ASGARD_HOME)/airflow-db-migrate.log; exit 1)

# api-server, scheduler, dag-processor, triggerer and an MLflow server; prints the UI address and login.
airflow: install data
	./scripts/airflow-local.sh

demo: install data airflow-db
	$(BIN)/asgard validate --strict
	@# `dags test` cannot reuse a logical date that already has a run: forget the previous demo run first.
	@$(BIN)/airflow dags delete customer_churn --yes > /dev/null 2>&1 || true
	@$(PYTHON) -m asgard_demo.support_api --sources $(ASGARD_HOME)/sources --port $(ASGARD_SUPPORT_API_PORT) & \
	  api=$$!; trap "kill $$api" EXIT; sleep 2; \
	  $(BIN)/airflow dags test customer_churn $(DEMO_DATE)T06:00:00+00:00
	$(PYTHON) -m asgard_demo.report --as-of $(DEMO_DATE)

report:
	$(PYTHON) -m asgard_demo.report --as-of $(DEMO_DATE)

validate: $(STAMP)
	$(BIN)/asgard validate --strict

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

test: install
	$(BIN)/asgard validate --strict
	$(BIN)/pytest

test-fast: $(STAMP)
	$(BIN)/pytest -m "not e2e and not spark"

# BENCH_SCALES="1 10" adds the 10x runs; each benchmark uses its own temporary ASGARD_HOME/AIRFLOW_HOME.
BENCH_SCALES ?= 1
bench: $(STAMP)
	$(BIN)/uv pip install --python $(PYTHON) -q -r benchmarks/requirements.txt
	$(PYTHON) benchmarks/e2e.py --scale $(BENCH_SCALES)
	$(PYTHON) benchmarks/engine_floor.py
	$(PYTHON) benchmarks/parse_time.py
	$(PYTHON) benchmarks/throughput.py --scale $(BENCH_SCALES)

clean:
	rm -rf $(ASGARD_HOME)
