# Build, test and lint the book. GNU make.
#
#   make book    install, make the demo cohort, execute every chapter, build book/_build/html
#   make test    unit tests, every notebook end-to-end (nbval) on the demo cohort and on the
#                rehearsal folders (tests/rehearsal.py), the book, the site check
#   make lint    ruff check + ruff format --check of the package, tests, benchmarks and
#                book/_ext, and ruff check of the chapters' code (notebooks/*.ipynb)
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

# Python 3.13 (Colab's Python since August 2026) in its own virtual environment (inside
# $(VENV)/, so git and ruff ignore it): torch first, then the package (which must keep that
# torch), the demo cohort, the unit tests and two chapters end to end.
# PyPI's Linux torch wheels are CUDA builds (GBs), so PY313_TORCH names the CPU wheel index;
# point it at a local wheel where that index cannot be reached.
PY313 ?= python3.13
PY313_VENV ?= $(VENV)/py313
PY313_TORCH ?= torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
PY313_CHAPTERS ?= notebooks/00-introduction.ipynb notebooks/04-abmil.ipynb
PY313_PY = $(PY313_VENV)/bin/python
PY313_TORCH_VERSION = $(PY313_PY) -c "import torch; print(torch.__version__)"

.PHONY: py313
py313:
	@test -x $(PY313_PY) || $(PY313) -m venv $(PY313_VENV)
	@$(PY313_PY) -c 'import sys; assert sys.version_info[:2] == (3, 13), sys.version'
	$(PY313_PY) -m pip install --quiet $(PY313_TORCH)
	@before=$$($(PY313_TORCH_VERSION)) && \
	$(PY313_PY) -m pip install --quiet -e ".[book,test]" && \
	after=$$($(PY313_TORCH_VERSION)) && \
	if [ "$$before" != "$$after" ]; then echo "torch $$before was replaced by $$after"; exit 1; fi
	$(call timed,python 3.13: demo cohort,$(PY313_PY) -m helpers.demo)
	$(call timed,python 3.13: unit tests,$(PY313_PY) -m pytest -q -m "not site" tests)
	$(call timed,python 3.13: two chapters (nbval),$(PY313_PY) -m pytest -p no:cacheprovider \
		--nbval-lax --nbval-current-env --nbval-cell-timeout=$(NBVAL_CELL_TIMEOUT) \
		$(PY313_CHAPTERS))

sync-check: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/test_notebook_sync.py

UNIT_CMD = $(PY) -m pytest -m "not site" tests
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
SITE_CMD = $(PY) -m pytest -m site tests/test_site.py

book: $(STAMP) cohort
	$(call timed,jupyter-book build,$(BOOK_CMD))

unit-tests: $(STAMP)
	$(call timed,unit tests,$(UNIT_CMD))

rehearsal: $(STAMP)
	$(call timed,rehearsal folders,$(REHEARSAL_ENV) && $(REHEARSAL_NOLABELS_ENV))

nbval: $(STAMP) cohort rehearsal
	$(call timed,notebooks end-to-end (nbval),$(NBVAL_CMD))
	$(call timed,notebooks end-to-end on the rehearsal folder (nbval),$(NBVAL_REHEARSAL_CMD))
	$(call timed,notebooks end-to-end without patch labels (nbval),$(NBVAL_NOLABELS_CMD))

site-test: $(STAMP)
	$(call timed,site check (headless chromium),$(SITE_CMD))

# The README's test command: unit tests, every notebook end-to-end (on the demo cohort, then
# on the rehearsal folders with and without patch labels), the book (which executes every
# chapter again, as the site shows it), then the built site in headless Chromium.
test: $(STAMP) cohort rehearsal
	$(call timed,unit tests,$(UNIT_CMD))
	$(call timed,notebooks end-to-end (nbval),$(NBVAL_CMD))
	$(call timed,notebooks end-to-end on the rehearsal folder (nbval),$(NBVAL_REHEARSAL_CMD))
	$(call timed,notebooks end-to-end without patch labels (nbval),$(NBVAL_NOLABELS_CMD))
	$(call timed,jupyter-book build,$(BOOK_CMD))
	$(call timed,site check (headless chromium),$(SITE_CMD))
	@echo "==> make test: all steps passed"

# The committed notebooks as they are (not regenerated first, so that the drift test of
# `make test` still catches a chapter edited without `make notebooks`).
lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS) $(NOTEBOOK_FILES)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

# (not the notebooks: they are generated; `make lint` names what to fix in book/*.md)
format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

clean:
	rm -rf book/_build .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

# Also the virtual environment, the generated demo cohort and the rehearsal folders.
distclean: clean
	rm -rf $(VENV) data/demo $(REHEARSAL_DIR) $(REHEARSAL_NOLABELS_DIR)
