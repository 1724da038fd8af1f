# Everything goes through a local virtual environment so a fresh machine needs only python3.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: install test lint bench heavy clean serve demo

$(VENV)/.installed: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[broker,dev]'
	touch $@

install: $(VENV)/.installed

test: install
	$(BIN)/python -m pytest -q

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

heavy: install
	$(BIN)/python -m pytest -q -m heavy || test $$? -eq 5

bench: install
	$(BIN)/python bench/bench_engine.py
	$(BIN)/python bench/bench_envelope.py
	$(BIN)/python bench/bench_ingest.py
	$(BIN)/python bench/bench_abuse.py
	$(BIN)/python bench/bench_http.py  # needs wrk (apt-get install wrk)

# The broker on the embedded default: a supervised redis-server with AOF in data/redis.
serve: install
	$(BIN)/tearline serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache

demo: install
	$(BIN)/tearline demo
