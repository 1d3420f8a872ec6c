# One-command local stack and test suite. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml scripts/setup.sh 2>/dev/null | sha1sum | cut -c1-12)
SCALE ?= small

.PHONY: help setup dev test test-fast seed schemas up down clean

help:
	@echo "make dev        install what is missing, then run the whole stack until Ctrl-C"
	@echo "make test       run the whole test suite (installs what is missing first)"
	@echo "make seed SCALE=small|medium|large   reload demo data into the running stack's MariaDB"
	@echo "make schemas    regenerate schemas/*.json from shared/events.py"
	@echo "make up / down  the production-like stack in Docker (Kafka, Debezium, Qdrant server)"

$(STAMP): pyproject.toml scripts/setup.sh
	PYTHON=$(PYTHON) bash scripts/setup.sh
	@touch $@

setup: $(STAMP)

dev: setup
	$(PY) -m devstack.run --scale $(SCALE)

test: setup
	$(PY) -m pytest

test-fast: setup
	$(PY) -m pytest -m "not slow"

seed: setup
	$(PY) -m demo.seed --scale $(SCALE) --reset

schemas: setup
	$(PY) -m shared.schemas --write

up:
	docker compose up -d --build --wait

down:
	docker compose down

clean:
	rm -rf .dev test-artifacts
