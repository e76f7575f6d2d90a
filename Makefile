# Build, test and lint the book. GNU make.
#
#   make book    install, make the demo cohort, execute every chapter, build book/_build/html
#   make test    unit tests, every chapter with its exercises' solutions on the demo cohort,
#                every notebook end-to-end (nbval) on the rehearsal folders (tests/rehearsal.py),
#                the book (only if a source changed since `make book`), the site check
#   make colab   every chapter on a Colab-like runtime (Python 3.13, Colab's torch, numpy,
#                pandas, scikit-learn and h5py installed first, the package on top)
#   make perturbed  every chapter under another numeric back end (MKL_CBWR, ATEN_CPU_CAPABILITY)
#   make bench   a short version of every benchmark (benchmarks/bench_all.py): speed-ups and
#                times against the budgets of benchmarks/budgets.py (about 5 minutes)
#   make check   the fast tier: unit tests not marked slow (under a minute, no demo cohort)
#   make help    every target, one line each
#   make openseadragon  fetch the slide viewer's OpenSeadragon again (npm) and check its sha256
#   make lint    ruff check + ruff format --check of the package, tests, benchmarks and
#                book/_ext, ruff check of the chapters' code (notebooks/*.ipynb), the import
#                contract of helpers/ (lint-imports) and its types (basedpyright)
#
# VENV=/path/to/venv picks another virtual environment; PYTHON is used to create it.

SHELL := /bin/bash
VENV ?= .venv
PY = $(VENV)/bin/python
PYTHON ?= python3
STAMP = $(VENV)/.mil-book-installed
NBVAL_CELL_TIMEOUT ?= 600
# --all: re-read (and so re-execute) every chapter, so warnings of unchanged pages count too.
JB_FLAGS ?= -W -n --keep-going --all

CHAPTERS := $(sort $(wildcard book/[0-9][0-9]-*.md))
LINT_PATHS := $(wildcard helpers tests benchmarks book/_ext)
# The chapters' code: ruff reads notebooks, so lint checks the ones `make notebooks` makes
# from book/*.md (fix a finding in the chapter, not in the notebook). Lint rules only: the
# chapters keep a layout chosen for reading (short calls on one line, `print` arguments
# aligned), which `ruff format` would undo, so pyproject.toml excludes them from formatting.
NOTEBOOK_FILES = $(patsubst book/%.md,notebooks/%.ipynb,$(CHAPTERS))

# $(call timed,NAME,COMMAND): run COMMAND, then print how long it took (also on failure).
define timed
	@echo "==> $(1)"; start=$$(date +%s); $(2); rc=$$?; \
	echo "==> $(1): $$(( $$(date +%s) - start ))s (exit $$rc)"; exit $$rc
endef

.PHONY: install venv cohort rehearsal notebooks sync-check book test unit-tests nbval site-test \
	lint format clean distclean

install venv: $(STAMP)

# Reinstalls only when pyproject.toml changes (or the stamp is gone).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[book,test]"
	@touch $@

cohort: $(STAMP)
	$(call timed,demo cohort,$(PY) -m helpers.demo)

# book/NN-*.md are the sources; notebooks/NN-*.ipynb are generated for Colab, Binder and
# Jupyter: jupytext reads each chapter and book/_ext/myst_to_notebook.py rewrites what only
# MyST understands (dropdowns, admonitions, labels, links, captions; check cells folded).
# The notebooks store no outputs; a notebook is rewritten only when its chapter changed.
NOTEBOOK_EXPORT = $(PY) book/_ext/myst_to_notebook.py --out notebooks

notebooks: $(STAMP)
	$(NOTEBOOK_EXPORT) $(CHAPTERS)

# Colab's runtime (August 2026): Python 3.13 with torch 2.11, numpy 2.1.3, pandas 2.2.3,
# scikit-learn 1.6.1 and h5py 3.16 preinstalled. In its own virtual environment (inside
# $(VENV)/, so git and ruff ignore it): those first, then the package installed as Colab's
# first cell does (not editable; it must keep them), then every chapter from an empty data
# folder (setup()'s fast start), as a reader on Colab runs them.
# PyPI's Linux torch wheels are CUDA builds (about 4 GB); they run on a CPU all the same.
COLAB_PYTHON ?= python3.13
COLAB_VENV ?= $(VENV)/colab
COLAB_PINS ?= torch==2.11.0 numpy==2.1.3 pandas==2.2.3 scikit-learn==1.6.1 h5py==3.16.0
COLAB_DATA ?= $(COLAB_VENV)/data/demo
# Numeric back-end settings for the pass (CI: the perturbed ones, as Colab's own CPUs differ
# from this machine's)
COLAB_ENV ?=
COLAB_PY = $(COLAB_VENV)/bin/python
COLAB_VERSIONS = $(COLAB_PY) -c "import importlib.metadata as m; \
	print(*(m.version(p) for p in ('torch', 'numpy', 'pandas', 'scikit-learn', 'h5py')))"

.PHONY: colab py313 perturbed help bench
colab:
	@test -x $(COLAB_PY) || $(COLAB_PYTHON) -m venv $(COLAB_VENV)
	@$(COLAB_PY) -c 'import sys; assert sys.version_info[:2] == (3, 13), sys.version'
	$(COLAB_PY) -m pip install --quiet $(COLAB_PINS) nbval ipykernel
	@before=$$($(COLAB_VERSIONS)) && \
	$(COLAB_PY) -m pip install --quiet . && \
	after=$$($(COLAB_VERSIONS)) && \
	if [ "$$before" != "$$after" ]; then echo "installing the package replaced $$before with $$after"; exit 1; fi; \
	echo "kept torch numpy pandas scikit-learn h5py: $$after"
	rm -rf $(COLAB_DATA)
	$(call timed,colab-like runtime: every chapter (nbval) $(COLAB_ENV),\
		$(COLAB_ENV) MIL_BOOK_DEMO_DIR=$(abspath $(COLAB_DATA)) \
		$(COLAB_PY) -m pytest -p no:cacheprovider --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=$(NBVAL_CELL_TIMEOUT) notebooks/)

# (the earlier name of `make colab`)
py313: colab

# Every chapter under another numeric back end than this CPU's own: MKL's AVX2 code path and
# ATen's portable kernels, so training rounds differently than in `make test`. The demo's
# features do not change (tests/test_determinism.py); the chapters' checks must hold anyway.
PERTURBED_ENV ?= MKL_CBWR=AVX2 ATEN_CPU_CAPABILITY=default
PERTURBED_DATA ?= data/perturbed/demo
perturbed: $(STAMP)
	rm -rf $(PERTURBED_DATA)
	$(call timed,perturbed back end ($(PERTURBED_ENV)): every chapter (nbval),\
		$(PERTURBED_ENV) MIL_BOOK_DEMO_DIR=$(abspath $(PERTURBED_DATA)) $(NBVAL_CMD))

help:
	@echo "make book        install, make the demo cohort, execute every chapter, build the site"
	@echo "make test        unit tests, chapters + solutions, rehearsal folders, book, site check"
	@echo "make install     .venv with the package and the book and test tools (also: make venv)"
	@echo "make check       the fast tier: unit tests not marked slow (under a minute)"
	@echo "make unit-tests  every unit test, the slow ones too (needs make cohort; minutes)"
	@echo "make solutions   every chapter with its exercises' solutions appended (demo cohort)"
	@echo "make nbval       every notebook end-to-end on the rehearsal folders"
	@echo "make colab       every chapter on a Colab-like runtime (Python 3.13, torch 2.11; also: make py313)"
	@echo "make perturbed   every chapter under another numeric back end"
	@echo "make cohort      the demo cohort (python -m helpers.demo)"
	@echo "make rehearsal   the rehearsal folders (tests/rehearsal.py)"
	@echo "make notebooks   regenerate notebooks/ from book/"
	@echo "make sync-check  notebooks/ equal to what book/ generates"
	@echo "make site-test   the built site in headless Chromium"
	@echo "make bench       a short version of every benchmark, against its budget (~5 min)"
	@echo "make openseadragon  fetch the slide viewer's OpenSeadragon again (npm) and check it"
	@echo "make lint        ruff (lint, format), import-linter (layers), basedpyright (types)"
	@echo "make format      ruff fix and format"
	@echo "make clean       the built site and caches"
	@echo "make distclean   make clean, and also .venv, the demo cohort and the rehearsal folders"
	@echo "make help        this list"

sync-check: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/test_notebook_sync.py

UNIT_CMD = $(PY) -m pytest -m "not site and not chapters" tests
# The fast tier (tests/conftest.py says what is slow): the inner loop of CONTRIBUTING.md
CHECK_CMD = $(PY) -m pytest -q -p no:cacheprovider -m "not slow and not site and not chapters" tests
# Every chapter as its notebook, with its exercises' solutions appended (tests/test_solutions.py)
SOLUTIONS_CMD = $(PY) -m pytest -p no:cacheprovider -m chapters tests/test_solutions.py
NBVAL_CMD = $(PY) -m pytest -p no:cacheprovider --nbval-lax \
	--nbval-cell-timeout=$(NBVAL_CELL_TIMEOUT) notebooks/
BOOK_CMD = $(VENV)/bin/jupyter-book build book $(JB_FLAGS)
# The rehearsal folders (tests/rehearsal.py): shaped like a reader's CAMELYON16 + TRIDENT
# outputs, with and without patch_labels/. The script makes a folder when it is missing or
# stale and prints `export MIL_BOOK_...` lines, so every chapter runs on it a second time.
REHEARSAL_DIR ?= data/rehearsal
REHEARSAL_NOLABELS_DIR ?= data/rehearsal-nolabels
# (`v=$$(...) &&` so that a failing script stops the pass instead of leaving the demo settings)
REHEARSAL_ENV = v="$$($(PY) tests/rehearsal.py --out $(REHEARSAL_DIR))" && eval "$$v"
REHEARSAL_NOLABELS_ENV = v="$$($(PY) tests/rehearsal.py --out $(REHEARSAL_NOLABELS_DIR) \
	--no-patch-labels)" && eval "$$v"
NBVAL_REHEARSAL_CMD = $(REHEARSAL_ENV) && $(NBVAL_CMD)
NBVAL_NOLABELS_CMD = $(REHEARSAL_NOLABELS_ENV) && $(NBVAL_CMD)
SITE_CMD = $(PY) -m pytest -m site tests/test_site.py tests/test_viewer_browser.py

# The site is rebuilt (every chapter executed) when a source of it changed since the last
# successful build: a chapter, the book's configuration, the package, the demo's arrays, the
# demo cohort's manifest or a MIL_BOOK_* setting. So `make test` after `make book` does not
# execute every chapter a second time for nothing.
BOOK_STAMP = book/_build/.mil-book-built
BOOK_SETTINGS = book/_build/.mil-book-settings
BOOK_SOURCES = $(CHAPTERS) book/workshop.md book/_config.yml book/_toc.yml \
	$(wildcard book/_ext/*.py helpers/*.py helpers/*/*.py helpers/*.npz helpers/static/*.html data/demo/cohort.json) \
	pyproject.toml

book: $(STAMP) cohort $(BOOK_STAMP)

$(BOOK_STAMP): $(BOOK_SOURCES) $(BOOK_SETTINGS)
	$(call timed,jupyter-book build,$(BOOK_CMD))
	@touch $@

# (rewritten only when the MIL_BOOK_* settings differ from the last build's)
$(BOOK_SETTINGS): FORCE
	@mkdir -p $(@D); s="$$(env | grep '^MIL_BOOK_' | sort)"; \
	if [ ! -f $@ ] || [ "$$s" != "$$(cat $@)" ]; then printf '%s\n' "$$s" > $@; fi

.PHONY: FORCE solutions
FORCE:

solutions: $(STAMP) cohort
	$(call timed,every chapter with its solutions,$(SOLUTIONS_CMD))

.PHONY: check
check: $(STAMP)
	$(call timed,fast tier (not slow),$(CHECK_CMD))

unit-tests: $(STAMP)
	$(call timed,unit tests,$(UNIT_CMD))

rehearsal: $(STAMP)
	$(call timed,rehearsal folders,$(REHEARSAL_ENV) && $(REHEARSAL_NOLABELS_ENV))

nbval: $(STAMP) rehearsal
	$(call timed,notebooks end-to-end on the rehearsal folder (nbval),$(NBVAL_REHEARSAL_CMD))
	$(call timed,notebooks end-to-end without patch labels (nbval),$(NBVAL_NOLABELS_CMD))

# Short versions of every benchmark of benchmarks/, each against its budget
# (benchmarks/budgets.py); fails when one is missed by more than a shared machine's noise.
bench: $(STAMP) cohort rehearsal
	$(call timed,benchmarks (short versions),\
		$(PY) benchmarks/bench_all.py --rehearsal $(REHEARSAL_DIR))

site-test: $(STAMP)
	$(call timed,site check (headless chromium),$(SITE_CMD))

# The README's test command: unit tests, every chapter's notebook with its exercises'
# solutions on the demo cohort, every notebook on the rehearsal folders with and without patch
# labels, the book (built only if `make book` has not built it from these sources), then the
# built site in headless Chromium.
test: $(STAMP) cohort rehearsal
	$(call timed,unit tests,$(UNIT_CMD))
	$(call timed,every chapter with its solutions,$(SOLUTIONS_CMD))
	$(call timed,notebooks end-to-end on the rehearsal folder (nbval),$(NBVAL_REHEARSAL_CMD))
	$(call timed,notebooks end-to-end without patch labels (nbval),$(NBVAL_NOLABELS_CMD))
	@$(MAKE) --no-print-directory $(BOOK_STAMP)
	$(call timed,site check (headless chromium),$(SITE_CMD))
	@echo "==> make test: all steps passed"

# The committed notebooks as they are (not regenerated first, so that the drift test of
# `make test` still catches a chapter edited without `make notebooks`).
# lint-imports: the import contract of helpers/ (pyproject.toml [tool.importlinter]: no
# cycles, layers), run from the checkout so that `helpers` is imported from it; basedpyright:
# the types of helpers/ (pyproject.toml [tool.basedpyright]; no error, and no baseline).
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS) $(NOTEBOOK_FILES)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)
	PYTHONPATH=$(CURDIR) $(VENV)/bin/lint-imports
	$(VENV)/bin/basedpyright --pythonpath $(PY)

# (not the notebooks: they are generated; `make lint` names what to fix in book/*.md)
format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

clean:
	rm -rf book/_build book/_viewers notebooks/_viewers .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

# Also the virtual environment, the generated demo cohort and the rehearsal folders.
distclean: clean
	rm -rf $(VENV) data/demo $(REHEARSAL_DIR) $(REHEARSAL_NOLABELS_DIR)

# The slide viewer's OpenSeadragon (helpers/static/openseadragon/, vendored): fetched again
# from the npm registry (`npm pack`), the tarball checked against the sha256 recorded in
# helpers/viewer.py, its minified build, images and LICENSE unpacked, SHA256SUMS rewritten;
# tests/test_viewer.py checks the files against both.
OSD_VERSION = $(shell sed -n 's/^OPENSEADRAGON_VERSION = "\(.*\)"/\1/p' helpers/viewer.py)
OSD_SHA256 = $(shell sed -n 's/^OPENSEADRAGON_TARBALL_SHA256 = "\(.*\)"/\1/p' helpers/viewer.py)
OSD_DIR = helpers/static/openseadragon
.PHONY: openseadragon
openseadragon:
	@tmp=$$(mktemp -d) && trap 'rm -rf "$$tmp"' EXIT && \
	(cd "$$tmp" && npm pack --silent openseadragon@$(OSD_VERSION) >/dev/null) && \
	echo "$(OSD_SHA256)  $$tmp/openseadragon-$(OSD_VERSION).tgz" | sha256sum -c - && \
	tar -xzf "$$tmp/openseadragon-$(OSD_VERSION).tgz" -C "$$tmp" && \
	rm -rf $(OSD_DIR) && mkdir -p $(OSD_DIR) && \
	cp "$$tmp/package/build/openseadragon/openseadragon.min.js" "$$tmp/package/LICENSE.txt" $(OSD_DIR)/ && \
	cp -r "$$tmp/package/build/openseadragon/images" $(OSD_DIR)/ && \
	(cd $(OSD_DIR) && find . -type f ! -name SHA256SUMS | sed 's|^\./||' | LC_ALL=C sort \
		| xargs sha256sum > SHA256SUMS) && \
	$(PY) -c "from helpers.viewer import openseadragon_folder as f; print('OpenSeadragon', f())"
