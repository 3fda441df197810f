# The README's two commands are `make demo` and `make test`.
# CKAN_VERSION selects the CKAN release (default 2.12.0), e.g.
#   make test CKAN_VERSION=2.11.6
CKAN_VERSION ?= 2.12.0
export CKAN_VERSION
VENV := .devstack/venv-$(CKAN_VERSION)
TEST_INI := .devstack/ckan-$(CKAN_VERSION)/test.ini
PYTEST_ARGS ?=
# The plugin's tests and the devstack's own (stack/tests).
TESTS ?= tests stack/tests

.PHONY: setup start stop demo test test-unit test-slow test-faults lint bench bench-large \
	bench-migrate-workers clean

setup:  ## install Debian packages, a venv with CKAN and this plugin
	bash stack/install.sh

start: setup  ## start the whole stack (CKAN on http://127.0.0.1:5000)
	bash stack/start.sh all

stop:  ## stop everything the stack runs
	bash stack/stop.sh

demo: start  ## the plugin at work: upload, jobs, object store, visibility
	$(VENV)/bin/python stack/demo.py

test: setup  ## the whole test suite (unit and integration tiers)
	bash stack/start.sh test
	DCOR_FAULT_ITERATIONS=1 $(VENV)/bin/python -m pytest --ckan-ini=$(TEST_INI) \
	    -m "not slow and (not faults or fault_sample)" $(PYTEST_ARGS) $(TESTS)

test-unit: setup  ## the unit tier only: no service, no CKAN config
	$(VENV)/bin/python -m pytest -p no:ckan $(PYTEST_ARGS) tests/unit stack/tests/unit

test-slow: setup  ## long scenarios (multi-GB files, killed workers)
	bash stack/start.sh test
	$(VENV)/bin/python -m pytest --ckan-ini=$(TEST_INI) -m slow $(PYTEST_ARGS) $(TESTS)

# 20 seeded iterations per scenario (3 when run alone); each passed
# scenario adds a JSON line to .devstack/fault-report.jsonl.
FAULT_ITERATIONS ?= 20
FAULT_REPORT ?= .devstack/fault-report.jsonl
test-faults: setup  ## the fault suite: killed workers, services restarted, full disks
	bash stack/start.sh test
	DCOR_FAULT_ITERATIONS=$(FAULT_ITERATIONS) DCOR_FAULT_REPORT=$(abspath $(FAULT_REPORT)) \
	    $(VENV)/bin/python -m pytest --ckan-ini=$(TEST_INI) -m faults $(PYTEST_ARGS) tests/integration/faults

lint: setup  ## ruff (complexity too), sizes, config and architecture pages, layer contract, mypy
	$(VENV)/bin/ruff check ckanext tests benchmarks stack
	$(VENV)/bin/python stack/check_sizes.py ckanext
	$(VENV)/bin/python stack/config_doc.py --check
	$(VENV)/bin/python stack/check_architecture.py
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

bench: start  ## benchmarks against the running stack
	$(VENV)/bin/python benchmarks/run.py
	$(VENV)/bin/python benchmarks/migrate_workers.py
	$(VENV)/bin/python benchmarks/direct.py
	$(VENV)/bin/python benchmarks/dcoraid_direct.py
	$(VENV)/bin/python benchmarks/audit.py
	$(VENV)/bin/python benchmarks/load.py --only-goal
	$(VENV)/bin/python benchmarks/load.py

# A site of 100,000 resources, built, measured and removed (long: 100,000
# PUTs and 1,000 dataset purges); try it small with
# LARGE_ARGS="--resources 2000 --datasets 20", keep it with "--keep".
LARGE_ARGS ?=
bench-large: start  ## the large-site benchmark (100,000 resources)
	$(VENV)/bin/python benchmarks/large_site.py $(LARGE_ARGS)

# Migration of 300 x 16 MiB by 1, 2 and 4 workers (--via-workers) vs
# --jobs 16 in one process (issue 25); try it small with
# MIGRATE_ARGS="--count 20 --size 1MiB --rounds 1".
MIGRATE_ARGS ?=
bench-migrate-workers: start  ## migration by the worker fleet vs one process
	$(VENV)/bin/python benchmarks/migrate_workers.py $(MIGRATE_ARGS)

clean: stop  ## remove the stack and all its data
	bash stack/clean_pg_outside.sh
	rm -rf .devstack
