# Everything goes through a local virtual environment so a fresh machine needs only python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test lint bench heavy clean serve demo lock test-latest

# Installed at the versions in requirements.lock, so every machine tests the same thing.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c requirements.lock -e '.[broker,cti,dev,bench]'
	touch $@

install: $(VENV)/.installed

# One worker per core (pytest-xdist): the suite waits on processes as much as it computes.
# A test module stays in one worker, so a broker it shares is started once.
PARALLEL := -n auto --dist loadfile

test: install
	$(BIN)/python -m pytest -q $(PARALLEL)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

heavy: install
	$(BIN)/python -m pytest -q -m heavy || test $$? -eq 5

# Every benchmark in one run (needs wrk: apt-get install wrk); results in bench/results/.
# BENCH_ARGS=--quick is the size CI runs.
bench: install
	$(BIN)/python -m bench $(BENCH_ARGS)

# The broker on the embedded default: a supervised redis-server with AOF in data/redis.
serve: install
	$(BIN)/tearline serve

# The newest versions pyproject.toml allows, in a virtual environment of their own: the suite
# on them catches an upstream change of default (as redis-py's socket timeout once was).
LATEST := .venv-latest
$(LATEST)/.installed: pyproject.toml
	$(PY) -m venv $(LATEST)
	$(LATEST)/bin/pip install --quiet --upgrade pip
	$(LATEST)/bin/pip install --quiet --upgrade --upgrade-strategy eager -e '.[broker,cti,dev,bench]'
	touch $@

test-latest: $(LATEST)/.installed
	$(LATEST)/bin/pip freeze --exclude-editable | diff requirements.lock - | grep '^[<>]' || true
	$(LATEST)/bin/python -m pytest -q $(PARALLEL)

# Rewrite requirements.lock from the newest versions allowed (then run the tests on it).
lock: $(LATEST)/.installed
	{ sed -n '1,3p' requirements.lock; $(LATEST)/bin/pip freeze --exclude-editable; } > requirements.lock.new
	mv requirements.lock.new requirements.lock

clean:
	rm -rf $(VENV) $(LATEST) .pytest_cache .mypy_cache .ruff_cache

demo: install
	$(BIN)/tearline demo
