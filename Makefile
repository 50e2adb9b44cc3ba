# Each target sets itself up from nothing: a virtualenv in .venv with the project and its
# development tools installed (re-installed when pyproject.toml changes).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
PYTEST_ARGS ?= -n 2

.PHONY: demo test test-sqlite test-postgresql lint bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/teleserve demo

# The suite runs twice: on SQLite, then on PostgreSQL (skipped with a clear line when the
# server is unreachable, unless TELESERVE_REQUIRE_PG=1, as in CI).
test: test-sqlite test-postgresql

# The browser tests run in a pytest run of their own: Playwright's sync API keeps an event
# loop running in the worker's main thread for the whole session, where the kiosk tests'
# asyncio.run would refuse to start. (On PostgreSQL they would skip: SQLite-only.)
test-sqlite: $(STAMP)
	TELESERVE_TEST_DB=sqlite $(BIN)/pytest $(PYTEST_ARGS) --ignore=tests/browser
	TELESERVE_TEST_DB=sqlite $(BIN)/pytest $(PYTEST_ARGS) tests/browser

test-postgresql: $(STAMP)
	TELESERVE_TEST_DB=postgresql $(BIN)/pytest $(PYTEST_ARGS) --ignore=tests/browser

lint: $(STAMP)
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/pip install --quiet -e '.[dev,bench]'
	$(BIN)/python bench/db_access_bench.py
	$(BIN)/python bench/ledger_bench.py
	$(BIN)/python bench/numbers_assign_bench.py --db sqlite
	$(BIN)/python bench/numbers_assign_bench.py --db postgresql
	$(BIN)/python bench/seed_bench.py

clean:
	rm -rf $(VENV) teleserve.db* .pytest_cache .mypy_cache .ruff_cache
