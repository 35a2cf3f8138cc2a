# gridsim developer commands. `make help` lists them; `make run` and `make test` work on a fresh machine.

SHELL := /bin/bash
.DEFAULT_GOAL := help
# `pip install --user` puts uv here, and it is often not on PATH yet.
export PATH := $(HOME)/.local/bin:$(PATH)

# Every bench/bench_*.py, in turn; `make bench BENCH=bench/bench_billing.py` runs one.
BENCH ?= $(sort $(wildcard bench/bench_*.py))

.PHONY: help install run test test-fast lint typecheck bench timescaledb secrets chaos all

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

install: ## install uv when missing, then the locked dependencies into .venv
	@# Debian's own python3 refuses --user installs (PEP 668) unless told that is fine.
	@command -v uv >/dev/null 2>&1 || python3 -m pip install --user uv \
		|| python3 -m pip install --user --break-system-packages uv || pip install uv
	uv sync --locked

run: install ## start gridsim (broker, database and the six services); Ctrl-C stops it
	uv run gridsim up

# A test that fails is run again, up to twice, and the summary lists it as rerun ("R"): integration tests
# share two cores with a real broker and database, and one timing-sensitive failure must not hide the rest
# of the run. A test that fails three times fails the run. The 30 slowest tests are listed at the end, so a
# CI log shows where the suite's time goes.
# Most tests wait on something (the broker, the database, the processes they start) rather than compute,
# so they run on more workers (pytest-xdist) than the machine has cores; each test has its own schema and
# topic base, so workers cannot interfere. TEST_WORKERS=0 runs them in this one process.
TEST_WORKERS ?= 4
test: install ## run the tests (integration tests find or start their own broker and database)
	uv run pytest -n $(TEST_WORKERS) --dist worksteal --reruns 2 --reruns-delay 1 --durations=30

# The fast tier: every test that needs neither a broker nor a database (domain, contracts, handlers on the
# in-memory bus; `integration` is added at collection to every test that uses a server's fixture), with
# fewer property-test examples, on two workers (pytest-xdist; nothing shared, so they cannot interfere).
# The server URLs point at a closed port (discard, 9), so a test that reaches for a server fails here
# instead of finding the local one. Bytecode caching stays on even where the environment turns it off
# (PYTHONDONTWRITEBYTECODE): compiling every module again costs seconds per run.
FAST_ENV := GRIDSIM_TEST_MQTT_URL=mqtt://127.0.0.1:9 \
	GRIDSIM_TEST_DATABASE_URL=postgresql://postgres@127.0.0.1:9/test GRIDSIM_REQUIRE_INTEGRATION=1
test-fast: install ## the fast tests: no broker, no database, under 30 s (handlers on the in-memory bus)
	env -u PYTHONDONTWRITEBYTECODE $(FAST_ENV) uv run pytest -q \
		-m 'not integration and not slow' --hypothesis-profile=fast -n 2

lint: install ## ruff: lint and formatting
	uv run ruff check .
	uv run ruff format --check .

typecheck: install ## mypy --strict over every package
	uv run mypy src shared/src services/*/src

bench: install ## run the benchmarks in bench/ (each writes its results under bench/results)
	@test -n "$(BENCH)" || { echo "no bench/bench_*.py found" >&2; exit 1; }
	@set -e; for script in $(BENCH); do echo "==> $$script"; uv run python "$$script"; done

# The PostgreSQL to build TimescaleDB for, and optionally a postgresql.conf to preload it from.
PG_CONFIG ?= $(or $(shell command -v pg_config 2>/dev/null),/usr/lib/postgresql/15/bin/pg_config)
PG_CONF ?=

timescaledb: ## build TimescaleDB 2.25.0 from ../shared/vendor into PG_CONFIG's PostgreSQL (PG_CONF=... preloads it)
	scripts/install-timescaledb.sh --pg-config "$(PG_CONFIG)" $(if $(PG_CONF),--conf "$(PG_CONF)")

secrets: install ## certificates, broker and database logins for docker compose, into deploy/secrets/ (kept if present)
	@test -f deploy/secrets/certs/ca.crt || uv run gridsim certs deploy/secrets/certs --host mosquitto
	uv run gridsim credentials export deploy/secrets/mqtt --data-dir deploy/secrets
	uv run gridsim credentials export-db deploy/secrets/db --data-dir deploy/secrets

chaos: install ## the chaos campaign: 50 faults of every kind against a fault-free run (long; bench/results/chaos.*)
	uv run python bench/chaos.py $(CHAOS_ARGS)

all: lint typecheck test ## lint, typecheck and test
