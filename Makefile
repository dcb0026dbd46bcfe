# nbmlops developer entry points. Two commands matter on a fresh machine:
#   make demo   creates .venv, installs nbmlops, runs the example notebook with capture
#   make test   installs the test extras and runs every check and test
PYTHON ?= python3
VENV := .venv
BIN := $(CURDIR)/$(VENV)/bin
export PATH := $(BIN):$(PATH)
PIP := $(BIN)/python -m pip
PYTEST_ARGS ?=

.PHONY: demo demo-loop test test-compat lint typecheck pytest pytest-team bench clean install-demo install-test labext airflow-venv kfp-venv

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# stamp files: reinstall only when pyproject.toml changes
$(VENV)/.installed-demo: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[demo]"
	touch $@

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(PIP) install --quiet -e ".[test]"
	touch $@

install-demo: $(VENV)/.installed-demo

install-test: $(VENV)/.installed-test

DEMO_OUTPUTS := example_notebooks/.nbmlops example_notebooks/out example_notebooks/data example_notebooks/models example_notebooks/reports example_notebooks/pipeline/data example_notebooks/pipeline/models example_notebooks/pipeline/reports

demo: install-demo
	@echo "== a fresh demo store (example_notebooks/.nbmlops), so the first run below is the first champion"
	rm -rf $(DEMO_OUTPUTS)
	cd example_notebooks && $(BIN)/nbmlops init
	@echo
	@echo "== the example pipeline (example_notebooks/pipeline/pipeline.yaml)"
	cd example_notebooks && $(BIN)/nbmlops pipeline show pipeline/pipeline.yaml
	@echo
	@echo "== run it: every step's cells are recorded; train_a and train_b run in parallel"
	cd example_notebooks && $(BIN)/nbmlops pipeline run pipeline/pipeline.yaml
	@echo
	@echo "== run it again: nothing changed, so every step is cached and no kernel starts"
	cd example_notebooks && $(BIN)/nbmlops pipeline run pipeline/pipeline.yaml
	@echo
	@echo "== a worse candidate (30% of the training labels shuffled): the gate keeps the champion"
	cd example_notebooks && $(BIN)/nbmlops pipeline run pipeline/pipeline.yaml -p label_noise 0.3
	@echo
	@echo "== the model registry: versions, aliases and the audit log of every decision"
	cd example_notebooks && $(BIN)/nbmlops models versions wine
	cd example_notebooks && $(BIN)/nbmlops models history wine
	@echo
	@echo "== the champion's model card, from lineage alone (data, params, metrics, gate decisions, cells)"
	cd example_notebooks && $(BIN)/nbmlops card wine@champion -o reports/wine-card.html
	@echo
	@echo "== data validation on the command line: the held-out split against the data contract"
	cd example_notebooks && $(BIN)/nbmlops validate pipeline/data/test.parquet --against pipeline/schemas/wine.json
	@echo
	@echo "== the same pipeline written as one tagged notebook (example_notebooks/pipeline_tagged.ipynb)"
	cd example_notebooks && $(BIN)/nbmlops pipeline run pipeline_tagged.ipynb
	@echo
	@echo "== one notebook with parameters: nbmlops run NOTEBOOK -p NAME VALUE"
	cd example_notebooks && $(BIN)/nbmlops run train.ipynb -o out/train.ipynb -p n_estimators 50
	@echo
	@echo "== schedule it nightly (fired by the daemon 'nbmlops scheduler'), then fire it once by hand"
	@cd example_notebooks && ($(BIN)/nbmlops schedule rm nightly >/dev/null 2>&1 || true)
	cd example_notebooks && $(BIN)/nbmlops schedule add pipeline/pipeline.yaml --cron "0 3 * * *" --tz Europe/Berlin --name nightly
	cd example_notebooks && $(BIN)/nbmlops schedule ls
	cd example_notebooks && $(BIN)/nbmlops trigger fire nightly
	cd example_notebooks && $(BIN)/nbmlops schedule history nightly
	@echo
	@echo "== runs in the store (pipeline runs are parents of their step runs)"
	cd example_notebooks && $(BIN)/nbmlops runs ls --limit 12
	@echo
	@echo "== lineage of the model the pipeline kept"
	cd example_notebooks && $(BIN)/nbmlops runs lineage pipeline/models/best.joblib
	@echo
	@echo "Lineage store: example_notebooks/.nbmlops/nbmlops.db (SQLite); executed notebooks under example_notebooks/.nbmlops/runs/<run-id>/."
	@echo "Model card: example_notebooks/reports/wine-card.html; registry: cd example_notebooks && ../$(VENV)/bin/nbmlops models ls"
	@echo "Reproduce a run: cd example_notebooks && ../$(VENV)/bin/nbmlops reproduce <RUN>   (docs/lifecycle.md)"
	@echo "Explore: cd example_notebooks && ../$(VENV)/bin/nbmlops runs show <RUN>   (or %load_ext nbmlops, %mlops runs in Jupyter)"

LABEXT_LINK := $(VENV)/share/jupyter/labextensions/nbmlops
LABEXT_SRC := $(wildcard labextension/src/*.ts labextension/style/*) labextension/package.json labextension/yarn.lock

# Rebuild the JupyterLab panel when its sources change (the editable install built it once) and
# let the venv serve the build output live (what `jupyter labextension develop` does: a symlink).
nbmlops/labextension/static/style.js: $(LABEXT_SRC) | $(VENV)/.installed-test
	cd labextension && $(BIN)/jlpm install && $(BIN)/jlpm build:prod

labext: nbmlops/labextension/static/style.js
	rm -rf $(LABEXT_LINK) && ln -s $(CURDIR)/nbmlops/labextension $(LABEXT_LINK)

lint: install-test
	$(BIN)/ruff check nbmlops tests benchmarks

typecheck: install-test
	$(BIN)/mypy

# Airflow 3 in a venv of its own (it is never installed next to nbmlops): the export tests load
# the generated DAG folder and run the example pipeline with `airflow dags test` in it.
AIRFLOW := $(CURDIR)/.venv-airflow
AIRFLOW_VERSION := 3.3.2
$(AIRFLOW)/.installed:
	$(PYTHON) -m venv $(AIRFLOW)
	$(AIRFLOW)/bin/python -m pip install --quiet --upgrade pip
	$(AIRFLOW)/bin/python -m pip install --quiet "apache-airflow==$(AIRFLOW_VERSION)"
	touch $@

airflow-venv: $(AIRFLOW)/.installed

# kfp pins requests/urllib3 exactly: a venv of its own, nbmlops editable (no lab-extension build)
KFP := $(CURDIR)/.venv-kfp
KFP_VERSION := 2.17.3
$(KFP)/.installed: pyproject.toml | $(VENV)/.installed-test
	$(PYTHON) -m venv $(KFP)
	$(KFP)/bin/python -m pip install --quiet --upgrade pip
	SKIP_JUPYTER_BUILDER=1 $(KFP)/bin/python -m pip install --quiet "kfp==$(KFP_VERSION)" -e ".[kfp]"
	touch $@

kfp-venv: $(KFP)/.installed

# the reliability soak (tests/test_reliability.py) runs 1 minute in `make test`; benchmarks/soak.py 600
# is the 10-minute one
NBMLOPS_SOAK_SECONDS ?= 60
export NBMLOPS_SOAK_SECONDS

pytest: install-test labext airflow-venv kfp-venv
	NBMLOPS_AIRFLOW_VENV=$(AIRFLOW) NBMLOPS_REQUIRE_AIRFLOW=1 NBMLOPS_KFP_VENV=$(KFP) NBMLOPS_REQUIRE_KFP=1 \
		$(BIN)/pytest $(PYTEST_ARGS)


# the continuous-training loop (docs/serving.md): serve the champion, replay normal then shifted
# traffic, drift fires the retraining pipeline, the challenger is promoted, the service follows
# It starts from a fresh demo store (like `make demo`), so the first pipeline run is the champion.
demo-loop: install-demo
	rm -rf $(DEMO_OUTPUTS) example_notebooks/loop/data example_notebooks/loop/models example_notebooks/loop/reports
	cd example_notebooks && $(BIN)/nbmlops init
	cd example_notebooks && $(BIN)/python loop/loop.py

# Team mode (docs/storage.md): the capture, pipeline and registry suites again on a PostgreSQL store
# with S3 artifacts (a throwaway PostgreSQL server and a moto S3 server on loopback, both started
# by the tests). Needs Debian's postgresql package, as `.ci/run` installs.
pytest-team: install-test
	NBMLOPS_TEST_TEAM=1 $(BIN)/pytest -p no:cacheprovider tests/test_capture_kernel.py \
		tests/test_pipeline_run.py tests/test_registry.py tests/test_registry_kernel.py \
		tests/test_artifacts_fsspec.py

test: lint typecheck pytest pytest-team

# The oldest IPython/ipykernel nbmlops allows (capture hooks broke other trackers on upgrades).
COMPAT := $(CURDIR)/.venv-compat
$(COMPAT)/.installed: pyproject.toml
	$(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install --quiet --upgrade pip
	$(COMPAT)/bin/python -m pip install --quiet "ipython==8.18.1" "ipykernel==6.29.5" -e ".[test]"
	touch $@

test-compat: $(COMPAT)/.installed
	PATH=$(COMPAT)/bin:$$PATH $(COMPAT)/bin/pytest -p no:cacheprovider \
		tests/test_capture_kernel.py tests/test_capture_shell.py tests/test_magics.py

bench: install-test
	$(BIN)/python benchmarks/capture_overhead.py
	$(BIN)/python benchmarks/store_queries.py
	$(BIN)/python benchmarks/pipeline.py
	$(BIN)/python benchmarks/server_api.py
	$(BIN)/python benchmarks/scheduler.py
	$(BIN)/python benchmarks/validation.py
	$(BIN)/python benchmarks/registry.py
	$(BIN)/python benchmarks/lifecycle.py
	$(BIN)/python benchmarks/monitor.py
	$(BIN)/python benchmarks/serving.py

clean:
	rm -rf $(VENV) $(COMPAT) $(AIRFLOW) $(KFP) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache $(DEMO_OUTPUTS) labextension/node_modules labextension/lib labextension/.yarn labextension/tsconfig.tsbuildinfo nbmlops/labextension test-artifacts
