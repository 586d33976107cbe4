# pandamode: two commands for a new user.
#   make run    creates .venv, installs pandamode, starts the dashboard on http://127.0.0.1:8000
#   make test   installs the test dependencies (PyTorch CPU, Playwright, Debian's Chromium,
#               PostgreSQL 15's programs) and runs the linters and the whole test suite, then the
#               app and worker tests again on a throwaway PostgreSQL cluster
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# PyTorch is only a test reference; 2.13.0 is the CPU build this project is checked against.
TORCH_SPEC ?= torch==2.13.0

.PHONY: run test test-sqlite test-postgres lint install install-test browser postgres bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e .
	touch $@

run: install
	$(BIN)/pandamode serve

install-test: $(VENV)/.test-installed browser postgres

$(VENV)/.test-installed: $(VENV)/.installed
	$(BIN)/python -m pip install --quiet -e '.[test,postgres]' '$(TORCH_SPEC)'
	touch $@

# The browser tests drive Debian's Chromium; nothing downloads a browser of its own.
browser:
	@bash .ci/install-chromium

# The app and worker tests also run on PostgreSQL 15: the fixture starts a throwaway cluster with
# initdb/pg_ctl (tests/app/postgres_cluster.py); this only makes sure the programs are there.
postgres:
	@bash .ci/install-postgres

lint: install-test
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

test: lint test-sqlite test-postgres

test-sqlite: install-test
	$(BIN)/pytest

# The same app and worker tests (tests/app) on a throwaway PostgreSQL cluster the fixture starts.
test-postgres: install-test
	PANDAMODE_TEST_DB=postgresql $(BIN)/pytest tests/app -q

bench: install-test
	$(BIN)/python bench/engine_vs_torch.py
	$(BIN)/python bench/engine_vs_torch.py --threads 1
	$(BIN)/python bench/dashboard_speed.py
	$(BIN)/python bench/pictures_cost.py
	$(BIN)/python bench/diagnostics_cost.py
	$(BIN)/python bench/long_runs.py
	$(BIN)/python bench/run_page.py
	$(BIN)/python bench/viewers.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/compare_page.py
	$(BIN)/python bench/studies.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache
