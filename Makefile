# Threshold's developer and CI entry points. `make run` to try it, `make test` for everything CI runs.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Bytecode caches on, whatever the machine says: without them, every pytest process rewrites the
# assertions of each test file again (about 6 s per process here). git ignores __pycache__/.
unexport PYTHONDONTWRITEBYTECODE

.PHONY: install run system-deps lint typecheck test bench constraints clean distclean

## install: the virtualenv in .venv with Threshold (editable) and the test tools, at pinned versions.
install: $(VENV)/.installed

$(BIN)/python:
	bash scripts/system-deps python3-venv
	$(PYTHON) -m venv $(VENV) || { rm -rf $(VENV); echo "make: '$(PYTHON) -m venv' failed" >&2; exit 1; }

# Re-installs only when the dependencies or their pins change. pip's output goes to a log,
# shown only when pip fails.
# Threshold Verify, the device app (verify/), goes into the same virtualenv with its TPM key
# store, which tpm2-pytss builds against Debian's libtss2-dev (scripts/system-deps tpm).
$(VENV)/.installed: pyproject.toml constraints.txt verify/pyproject.toml | $(BIN)/python
	@bash scripts/system-deps tpm
	@echo "Installing Threshold and its dependencies into $(VENV) (log: $(VENV)/pip-install.log)"
	@$(BIN)/python -m pip install --disable-pip-version-check -c constraints.txt -e '.[test,tpm]' \
		-e './verify[tpm]' \
		> $(VENV)/pip-install.log 2>&1 \
		|| { cat $(VENV)/pip-install.log >&2; \
		     echo "make: pip install failed: its output is above and in $(VENV)/pip-install.log" >&2; \
		     exit 1; }
	@touch $@

## node-deps: the Node test tools (axe-core, for the browser tests) in node_modules, as
## package-lock.json pins them; again only when it changes. npm's summary is dropped, not its errors.
.PHONY: node-deps
node-deps: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	@bash scripts/system-deps npm
	@echo "Installing the Node test tools into node_modules (npm ci)"
	@npm ci --no-audit --no-fund --loglevel=error > /dev/null
	@touch $@

## run: migrate the database and serve; the first administrator's link (while no administrator
## has a passkey) is printed last, once the server is ready.
run: install
	$(BIN)/threshold migrate --noinput
	$(BIN)/threshold serve --bootstrap

## system-deps: Debian's chromium and its headless shell, postgresql, python3-venv and the TPM tools
## (swtpm, tpm2-tools, libtss2-dev), through apt-get when missing.
system-deps:
	bash scripts/system-deps

## lint: the import contracts (lint-imports), ruff's checks, mypy (see [tool.importlinter],
## [tool.ruff] and [tool.mypy] in pyproject.toml), and
## `makemigrations --check`: a model changed without its migration fails. That check reads no
## database of yours and needs no server: it runs on a throwaway SQLite file and var/.
lint: install
	$(BIN)/lint-imports --no-cache
	$(BIN)/ruff check threshold tests bench verify
	$(BIN)/mypy threshold verify/threshold_verify
	@scratch=$$(mktemp -d) && trap 'rm -rf "$$scratch"' EXIT && \
	  echo "$(BIN)/threshold makemigrations --check --dry-run" && \
	  THRESHOLD_VAR_DIR="$$scratch" DATABASE_URL="sqlite:///$$scratch/threshold.sqlite3" \
	  $(BIN)/threshold makemigrations --check --dry-run

## typecheck: mypy with django-stubs alone (`make lint` runs it too).
typecheck: install
	$(BIN)/mypy threshold

## test: lint, the whole suite on SQLite (browser tests included), then the integration tests on
## a throwaway PostgreSQL server (but those marked same_on_every_database, which use no test
## database); each in TEST_WORKERS processes (pytest-xdist), each process with
## its own var/, test database and browser server (`make test TEST_WORKERS=0` for one process).
## `--dist load` hands out tests in pytest-django's order, database tests first: a process that has
## started the browser tests (Playwright marks its event loop as running) runs no database test after
## them. (`loadfile` and `loadscope` hand out the largest files first, browser ones included.)
TEST_WORKERS ?= 2
PYTEST_PARALLEL = $(if $(filter-out 0,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist load)
test: system-deps install node-deps lint
	$(BIN)/pytest $(PYTEST_PARALLEL)
	bash scripts/with-postgres $(BIN)/pytest tests/integration -m 'not same_on_every_database' \
	  -p no:cacheprovider $(PYTEST_PARALLEL)

## bench: the sign-in benchmark (bench/suite.py): SQLite and PostgreSQL against the floor, latency at
## half load, memory over 10,000 sign-ins, 1,000 and 1,000,000 passkeys; about 10 minutes.
bench: install
	$(BIN)/python bench/suite.py

## constraints: re-pin constraints.txt from a clean install of the latest allowed versions.
constraints:
	rm -rf /tmp/threshold-constraints-venv
	$(PYTHON) -m venv /tmp/threshold-constraints-venv
	/tmp/threshold-constraints-venv/bin/python -m pip install --disable-pip-version-check -q -e '.[test]'
	{ sed -n '/^#/p' constraints.txt; \
	  /tmp/threshold-constraints-venv/bin/python -m pip freeze --exclude-editable; } > constraints.txt.new
	mv constraints.txt.new constraints.txt
	rm -rf /tmp/threshold-constraints-venv

## clean: caches and build output (keeps .venv and var/, which holds the database and secret key).
clean:
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +
	rm -rf .pytest_cache .ruff_cache .mypy_cache build dist *.egg-info

## distclean: clean, and remove the virtualenv too.
distclean: clean
	rm -rf $(VENV)
