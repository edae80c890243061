# Two commands for a fresh machine: `make run` and `make test` (and `make demo` to see the flow).
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: lock lint run demo test test-reliability bench install install-dev browser clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	touch $(VENV)/.installed $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

## Serve on http://localhost:5000 (PORT) with SQLite, the embedded worker and console messages.
## Reads .env (both steps), like every webhook-app command.
run: install
	$(BIN)/webhook-app db upgrade
	$(BIN)/gunicorn --config gunicorn.conf.py webhook_app.wsgi:app

## The whole flow with stand-ins for Stripe and Loops (no account needed); refuses APP_ENV=production.
demo: install
	$(BIN)/python -m demo

## The whole suite (PostgreSQL tests run when TEST_DATABASE_URL is set, and skip with a reason otherwise),
## after lint, format check and types; fails when line coverage drops below 92% (measured: 93%).
test: install-dev lint
	$(BIN)/python -m pytest --cov-fail-under=92

## Lint, format check and types: part of `make test`, so CI fails on any of them.
lint: install-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## The slow fault-injection scenarios too.
test-reliability: install-dev
	$(BIN)/python -m pytest -m "reliability" --run-slow

## Benchmarks (about 25 minutes; not part of `make test`): prints the table of figures and targets, writes
## benches/results/*.json, the chart and docs/performance.md. Installs wrk (apt-get) and matplotlib (venv);
## PostgreSQL figures need BENCH_DATABASE_URL (an admin URL; default below). BENCH_ARGS="--only ack" etc.
BENCH_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres

$(VENV)/.installed-bench: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/pip install --quiet -c constraints.txt -e '.[bench]'
	touch $(VENV)/.installed $@

bench: $(VENV)/.installed-bench
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) PYTHON=$(BIN)/python sh benches/setup.sh
	BENCH_DATABASE_URL=$(BENCH_DATABASE_URL) $(BIN)/python -m benches.run $(BENCH_ARGS)

## Headless Chromium for the browser tests: Debian's `chromium` at /usr/bin/chromium, driven by Playwright
## (never `playwright install`). Needs root or sudo; where it is missing the browser tests skip and say why.
browser:
	@test -x /usr/bin/chromium || { SUDO=$$([ "$$(id -u)" -eq 0 ] || echo sudo); \
		$$SUDO apt-get update -qq && $$SUDO apt-get install -y -qq chromium; }
	@test -x /usr/bin/chromium && echo "chromium: /usr/bin/chromium"

## Re-pin constraints.txt from a fresh resolve of pyproject.toml's runtime and dev dependencies.
lock:
	rm -rf .lock-venv && $(PYTHON) -m venv .lock-venv && .lock-venv/bin/pip install --quiet -e '.[dev]'
	{ sed -n '1,2p' constraints.txt; .lock-venv/bin/pip freeze --exclude-editable | grep -v '^-e'; } > constraints.new
	mv constraints.new constraints.txt && rm -rf .lock-venv

clean:
	rm -rf $(VENV) instance .pytest_cache
