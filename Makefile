# Build, test and lint the book. GNU make.
#
#   make book    install, make the demo cohort, execute every chapter, build book/_build/html
#   make test    unit tests, every notebook end-to-end (nbval), the book, the site check
#   make lint    ruff check + ruff format --check
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

# $(call timed,NAME,COMMAND): run COMMAND, then print how long it took (also on failure).
define timed
	@echo "==> $(1)"; start=$$(date +%s); $(2); rc=$$?; \
	echo "==> $(1): $$(( $$(date +%s) - start ))s (exit $$rc)"; exit $$rc
endef

.PHONY: install venv cohort notebooks sync-check book test unit-tests nbval site-test \
	lint format clean distclean

install venv: $(STAMP)

# Reinstalls only when pyproject.toml changes (or the stamp is gone).
$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -e ".[book,test]"
	@touch $@

cohort: $(STAMP)
	$(call timed,demo cohort,$(PY) -m helpers.demo)

# book/NN-*.md are the sources; notebooks/NN-*.ipynb are generated for Colab and Binder.
# --update keeps the cell ids of an existing notebook (no churn in git diffs); any outputs it
# holds are cleared first, so the notebooks never store outputs.
STRIP_OUTPUTS = import sys, nbformat; p = sys.argv[1]; nb = nbformat.read(p, 4); \
	code = [c for c in nb.cells if c.cell_type == "code"]; \
	dirty = any(c.outputs or c.execution_count is not None for c in code); \
	[c.update(outputs=[], execution_count=None) for c in code]; \
	dirty and nbformat.write(nb, p)

notebooks: $(STAMP)
	@mkdir -p notebooks
	@for md in $(CHAPTERS); do \
		nb=notebooks/$$(basename "$${md%.md}").ipynb; \
		if [ -f "$$nb" ]; then $(PY) -c '$(STRIP_OUTPUTS)' "$$nb" || exit 1; fi; \
		$(VENV)/bin/jupytext --quiet --update --to ipynb --output "$$nb" "$$md" || exit 1; \
		echo "$$md -> $$nb"; \
	done

sync-check: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider tests/test_notebook_sync.py

UNIT_CMD = $(PY) -m pytest -m "not site" tests
NBVAL_CMD = $(PY) -m pytest -p no:cacheprovider --nbval-lax \
	--nbval-cell-timeout=$(NBVAL_CELL_TIMEOUT) notebooks/
BOOK_CMD = $(VENV)/bin/jupyter-book build book $(JB_FLAGS)
SITE_CMD = $(PY) -m pytest -m site tests/test_site.py

book: $(STAMP) cohort
	$(call timed,jupyter-book build,$(BOOK_CMD))

unit-tests: $(STAMP)
	$(call timed,unit tests,$(UNIT_CMD))

nbval: $(STAMP) cohort
	$(call timed,notebooks end-to-end (nbval),$(NBVAL_CMD))

site-test: $(STAMP)
	$(call timed,site check (headless chromium),$(SITE_CMD))

# The README's test command: unit tests, every notebook end-to-end, the book (which executes
# every chapter again, as the site shows it), then the built site in headless Chromium.
test: $(STAMP) cohort
	$(call timed,unit tests,$(UNIT_CMD))
	$(call timed,notebooks end-to-end (nbval),$(NBVAL_CMD))
	$(call timed,jupyter-book build,$(BOOK_CMD))
	$(call timed,site check (headless chromium),$(SITE_CMD))
	@echo "==> make test: all steps passed"

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS)
	$(VENV)/bin/ruff format --check $(LINT_PATHS)

format: $(STAMP)
	$(VENV)/bin/ruff check --fix $(LINT_PATHS)
	$(VENV)/bin/ruff format $(LINT_PATHS)

clean:
	rm -rf book/_build .pytest_cache .ruff_cache
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -print0 | xargs -0 rm -rf

# Also the virtual environment and the generated demo cohort.
distclean: clean
	rm -rf $(VENV) data/demo
