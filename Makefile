# The two commands of the README. Each creates .venv and installs into it on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
# Prefect's usage analytics need the internet; keep runs quiet and offline.
export PREFECT_SERVER_ANALYTICS_ENABLED ?= false

.PHONY: demo test lint install clean-venv

install: $(STAMP)

$(STAMP): pyproject.toml requirements.lock
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c requirements.lock -e '.[test]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/vrme demo --config configs/demo.yaml

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# ruff (pycodestyle, pyflakes, import order) and the import contract: nothing under vrme/
# imports prefect, tasks or flows (ruff's banned-api rule, and a check of what importing every
# vrme module loads).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -p no:cacheprovider tests/test_import_contract.py

clean-venv:
	rm -rf $(VENV)
