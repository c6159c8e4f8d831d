# ovkit: `make reproduce` runs the default profile end to end; `make test` checks everything.
# Each target installs what is missing first (virtualenv, packages, Jupyter kernel, data).

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PROFILE ?= default
STAMP  := $(VENV)/.ovkit-installed
SWEEP_STAMP := $(VENV)/.ovkit-sweep-installed
SWEEP_FLAGS ?=

# Tests and CI: no progress bars, no display, stable hashing.
TEST_ENV := TQDM_DISABLE=1 MPLBACKEND=Agg PYTHONHASHSEED=0 OVKIT_PROFILE=test

.PHONY: setup data reproduce smoke profile seeds why scaling training taste test unit unit-all test-browser nbval lab ui bench bench-scale notebooks lint clean distclean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info[:2] == (3, 11), "ovkit needs Python 3.11, found " + sys.version.split()[0]'
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --upgrade --quiet pip
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (ovkit)"
	touch $(STAMP)

# Ray (`ovkit sweep --engine ray`) and MLflow (`--track`, `make ui`): only `make seeds`, `make ui` and
# `make test` install them.
$(SWEEP_STAMP): $(STAMP)
	$(PY) -m pip install --quiet -e '.[dev,sweep,track]'
	touch $(SWEEP_STAMP)

data: setup
	$(BIN)/ovkit fetch

reproduce: data
	$(BIN)/ovkit run --profile $(PROFILE)

smoke: data
	$(BIN)/ovkit run --profile smoke

# Where time and memory go on a cold start, as on a fresh clone: the profile with empty caches (stage
# cache, unpacked package, parsed meshes; all under runs/cold-start/, yours stay), then the table of
# runs/cold-start/$(PROFILE)/resources.json (per notebook; report.md there adds every stage build).
COLD := $(CURDIR)/runs/cold-start
profile: data
	rm -rf $(COLD)
	OVKIT_RUNS=$(COLD) OVKIT_ARTIFACTS=$(COLD)/artifacts OVKIT_DATA=$(COLD)/data \
		OVKIT_SH3D="$(firstword $(wildcard $(CURDIR)/data/raw/*.deb))" $(BIN)/ovkit run --profile $(PROFILE)
	$(BIN)/ovkit resources $(COLD)/$(PROFILE)

# The profile over 3 seeds (sweeps/seeds.yaml) on Ray: runs/seeds-$(PROFILE)/summary.md.
# SWEEP_FLAGS="--engine local" runs the points one after another without Ray.
seeds: data $(SWEEP_STAMP)
	$(BIN)/ovkit sweep sweeps/seeds.yaml --profile $(PROFILE) $(SWEEP_FLAGS)

# Why OneVision trails the cascade (sweeps/why.yaml): SID layout x logging exposure x 3 seeds, notebook 04
# per point: runs/why-$(PROFILE)/summary.md, which notebook 08 then shows.
why: data $(SWEEP_STAMP)
	$(BIN)/ovkit sweep sweeps/why.yaml --profile $(PROFILE) $(SWEEP_FLAGS)

# OneVision's capacity and training steps on a small grid (sweeps/scaling.yaml): the scaling curve of
# notebook 08, runs/scaling-$(PROFILE)/summary.md.
scaling: data $(SWEEP_STAMP)
	$(BIN)/ovkit sweep sweeps/scaling.yaml --profile $(PROFILE) $(SWEEP_FLAGS)

# One setting at a time in one world, notebook 04 per point (notebook 08 shows them): OneVision's training
# signal and the decoder without its prior (sweeps/training.yaml), the shoppers' taste strength (taste.yaml).
training: data $(SWEEP_STAMP)
	$(BIN)/ovkit sweep sweeps/training.yaml --profile $(PROFILE) $(SWEEP_FLAGS)

taste: data $(SWEEP_STAMP)
	$(BIN)/ovkit sweep sweeps/taste.yaml --profile $(PROFILE) $(SWEEP_FLAGS)

test: data $(SWEEP_STAMP)
	$(MAKE) lint unit-all nbval test-browser

# The fast tier (tests not marked slow: no papermill runs, no sweeps; under 2 minutes) while you work.
unit: setup
	$(TEST_ENV) $(PY) -m pytest -q -m "not slow" tests

unit-all: setup
	$(TEST_ENV) $(PY) -m pytest -q -m "not browser" tests

# JupyterLab in headless Chromium (Debian's package, installed here when root) driven by Playwright:
# notebook 06's explorer and notebook 00's figures; after nbval, whose smoke stage cache it reuses.
test-browser: setup
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
		|| echo "no chromium (apt-get install chromium): the browser tests will say so and skip"
	$(TEST_ENV) $(PY) -m pytest -q -m browser -rs tests/test_browser.py

nbval: setup
	$(TEST_ENV) $(PY) -m pytest -q --nbval-lax --nbval-current-env \
		--nbval-sanitize-with tests/nbval_sanitize.cfg -p no:cacheprovider notebooks

# Jupyter refuses to run as root (containers, cloud notebooks) unless asked explicitly.
LAB_FLAGS := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: setup
	$(BIN)/jupyter lab notebooks $(LAB_FLAGS)

# MLflow's UI on the runs that `ovkit run/sweep --track` logged (OVKIT_TRACKING_URI, else runs/mlflow.db).
ui: $(SWEEP_STAMP)
	$(BIN)/mlflow ui --backend-store-uri "$${OVKIT_TRACKING_URI:-sqlite:///$${OVKIT_RUNS:-$(CURDIR)/runs}/mlflow.db}"

bench: data
	$(PY) benchmarks/catalogue.py
	$(PY) benchmarks/latency.py --profile $(PROFILE) --threads 1 2
	$(PY) benchmarks/backbones.py

# VRQ, trie, beam search and recall on synthetic catalogues of 10k / 100k / 1M SKUs (~1 h on 2 cores):
# runs/bench-scale/scale.md. SCALE_SIZES="10000 100000" for a shorter run.
SCALE_SIZES ?= 10000 100000 1000000
bench-scale: setup
	$(PY) benchmarks/scale.py --sizes $(SCALE_SIZES)

# Re-execute the notebooks in place with their (smoke) defaults, to refresh committed outputs.
notebooks: data
	for nb in notebooks/[0-9][0-9]_*.ipynb; do \
		TQDM_DISABLE=1 OVKIT_PROFILE=notebooks $(BIN)/papermill -k python3 --cwd notebooks "$$nb" "$$nb" || exit 1; done

lint: setup
	$(BIN)/ruff check ovkit tests benchmarks notebooks

clean:
	rm -rf runs artifacts .pytest_cache

distclean: clean
	rm -rf $(VENV) data/raw data/cache
