# `make run` runs the pipeline, `make test` the tests; both create .venv first if needed.

PYTHON ?= python3.11
VENV := $(CURDIR)/.venv
export PATH := $(VENV)/bin:$(PATH)
export MLFLOW_DISABLE_TELEMETRY := true

# A local copy of the Fashion-MNIST files beside the project (developers and CI have one)
# is tried before the sources in params.yaml.
SHARED_DATA := $(abspath $(CURDIR)/../shared/data/fashion-mnist)
ifneq ($(wildcard $(SHARED_DATA)/train-images-idx3-ubyte.gz),)
export FASHION_MNIST_SOURCE ?= $(SHARED_DATA)
endif

# The page `dvc plots show` fills (.dvc/config names it), with the charting library inside so
# that its charts draw offline: fetched once per environment (npm), see dvc_tools.plots_page.
PLOTS_PAGE := $(VENV)/share/dvc-plots/index.html

.PHONY: run test test-all mutants dag exps ui compare promote sweep worker remote server server-stop user report benchmark lock

# The lesson: every model trained and evaluated (`dvc repro train samples` and what they need; the
# sweeps are `make sweep`), then a line per model. The params stage runs first and refuses a section
# of params.yaml no stage reads before any work.
SUMMARY := PYTHONPATH=src python -m tracking.compare --summary
# DVC reads all of dvc.yaml first: an entry without its `dataset` is said here, not as DVC's error.
TEMPLATE_PARAMS := PYTHONPATH=src python -m dvc_tools.template_params
run: $(VENV)/.installed $(PLOTS_PAGE)
	$(TEMPLATE_PARAMS)
	dvc repro train samples
	$(SUMMARY)

# The tests in TEST_WORKERS processes (pytest-xdist; 0: one), a test file to a process.
# `make test`: the quick loop (unit tests and one real `dvc repro` + `dvc exp run` of the lesson on
# tiny data); `make test-all` adds the end-to-end tests marked slow (every stage and sweep, the queue,
# MLflow and PostgreSQL servers, the browser, a fresh clone's bytes, README and docs blocks): CI's.
TEST_WORKERS ?= 2
PYTEST := python -m pytest -n $(TEST_WORKERS) --dist loadfile

test: $(VENV)/.installed $(PLOTS_PAGE)
	$(PYTEST) -m "not slow"

test-all: $(VENV)/.installed $(PLOTS_PAGE)
	$(PYTEST)

# Mutation testing (not part of `make test`): mutmut changes the modules that carry the lesson's
# promises ([tool.mutmut] in pyproject.toml) one small edit at a time and runs the fast tests
# against each change; a change no test notices survives. `make mutants MODULES="files numerics"`
# for some modules; then `mutmut results` lists the survivors and `mutmut show <name>` shows one.
MUTANT_WORKERS ?= 2
mutants: $(VENV)/.installed
	mutmut run --max-children $(MUTANT_WORKERS) $(foreach m,$(MODULES),'regression.$(m).*' 'tracking.$(m).*')

# The pipeline's stages and what feeds what, as a Mermaid chart in Markdown (GitHub draws it):
# every line short, where `dvc dag` draws one over 200 columns wide (`params` feeds every stage).
dag: $(VENV)/.installed
	dvc dag --md

# DVC's experiments as a table that fits 120 columns: the params that vary, each model's headline
# metric (`dvc exp show` shows every param and dependency hash). ARGS=-A for every commit's.
exps: $(VENV)/.installed
	PYTHONPATH=src python -m dvc_tools.experiments $(ARGS)

# The MLflow runs side by side, best first (MODEL=softmax_nn for one model).
compare: $(VENV)/.installed
	PYTHONPATH=src python -m tracking.compare $(if $(MODEL),--model $(MODEL))

# Point each registered model's `champion` alias at its best version.
promote: $(VENV)/.installed
	PYTHONPATH=src python -m tracking.registry

# The MLflow UI on http://127.0.0.1:5000 (PORT=5005 for another port). First prints the link to
# the run list in the lesson's view (key params and metrics as columns, best test accuracy first);
# there, tick runs and press "Compare" to see them side by side.
ui: $(VENV)/.installed
	PYTHONPATH=src python -m tracking.ui $(if $(PORT),--port $(PORT))

# The sweep of each model in params.yaml (`sweep@<model>`: trials on Dask, the best refit on all
# the training data). On the local machine, or on a running Dask cluster:
# DASK_SCHEDULER_ADDRESS=tcp://host:8786 make sweep
sweep: $(VENV)/.installed $(PLOTS_PAGE)
	$(TEMPLATE_PARAMS)
	dvc repro $(if $(MODEL),sweep@$(MODEL),sweep)
	$(SUMMARY)

# A Dask worker for sweeps, on any machine with a clone of the same commit and `make` run once:
# make worker SCHEDULER=tcp://host:8786 [WORKERS=n, default one per core]. It imports this
# package before anything else, so its numerics are pinned before torch loads.
worker: $(VENV)/.installed
	@test -n "$(SCHEDULER)" || { echo "usage: make worker SCHEDULER=tcp://<scheduler host>:<port>"; exit 1; }
	PYTHONPATH=$(CURDIR)/src dask worker "$(SCHEDULER)" --nthreads 1 --nworkers $(or $(WORKERS),-1) \
	  --preload regression --no-dashboard

# The DVC remote everyone pushes to and pulls from: a folder or any URL DVC supports. Kept in
# .dvc/config.local, which git does not track, so that `dvc exp apply` (which restores the
# committed .dvc/config) never removes it.
remote: $(VENV)/.installed
	@test -n "$(URL)" || { echo "usage: make remote URL=<folder or URL, e.g. /mnt/shared/dvc or s3://bucket/path>"; exit 1; }
	dvc remote add --local --force --default store "$(URL)"
	@echo "DVC remote 'store' -> $(URL): dvc push / dvc pull / dvc exp push origin <exp>"

# The team's MLflow server with accounts, on PostgreSQL, kept in .mlflow-server/ (see README):
# `make server PORT=5001 PG_PORT=5433` (the defaults) on 127.0.0.1; `HOST=0.0.0.0` for other
# machines, over HTTPS only (a certificate made at the first start, or CERT=… KEY=…).
# `make server-stop` stops MLflow and PostgreSQL.
server: $(VENV)/.installed
	PYTHONPATH=src python -m team_server.server start $(if $(PORT),--port $(PORT) )$(if $(PG_PORT),--postgres-port $(PG_PORT) )$(if $(HOST),--host $(HOST) )$(if $(CERT),--cert "$(CERT)" )$(if $(KEY),--key "$(KEY)")

# An account on the running server, made by its admin: `make user NAME=alice ROLE=editor` (or
# reader); prints once the two lines that give it to alice.
user: $(VENV)/.installed
	@PYTHONPATH=src python -m team_server.server user "$(NAME)" "$(ROLE)"

server-stop: $(VENV)/.installed
	PYTHONPATH=src python -m team_server.server stop

# What a change did to the results (report/report.md and its curves): params and headline metrics
# old -> new, and each changed model's learning curves. BASE=<rev> (default: the merge base with
# main, else HEAD~1) against the workspace, or NEW=<rev>.
report: $(VENV)/.installed
	PYTHONPATH=src python -m dvc_tools.report $(if $(BASE),--base "$(BASE)") $(if $(NEW),--new "$(NEW)")

# Where the time of `dvc repro` and `dvc exp run` goes: prints a table, writes benchmarks/results.json
# and its section of docs/benchmarks.md (the machine and commit it ran on).
benchmark: $(VENV)/.installed
	python benchmarks/pipeline.py

$(VENV)/.installed: requirements.lock
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	touch $@

$(PLOTS_PAGE): src/dvc_tools/plots_page.py | $(VENV)/.installed
	PYTHONPATH=src python -m dvc_tools.plots_page $@

# Re-pin the whole environment after changing requirements.txt.
lock:
	rm -rf $(VENV).lock && $(PYTHON) -m venv $(VENV).lock
	$(VENV).lock/bin/python -m pip install --quiet -r requirements.txt
	{ echo '# The whole environment, pinned: generated by `make lock` from requirements.txt. Do not edit.'; \
	  $(VENV).lock/bin/python -m pip freeze; } > requirements.lock
	rm -rf $(VENV).lock
