# Two commands for a newcomer: `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(BIN)/python:
	$(shell command -v $(PYTHON) >/dev/null 2>&1 && echo $(PYTHON) || echo python3) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/portal-sync demo

lint: $(STAMP)
	$(BIN)/ruff check connector tests
	$(BIN)/mypy connector

# Six workers on two cores: most tests wait on a broker, a daemon or a simulator, not on the CPU. Each worker
# starts its own broker (a session fixture); every PostgreSQL test has a database of its own.
test: lint
	$(BIN)/pytest -q -n 6

bench: $(STAMP)
	$(BIN)/python -m tests.bench

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache
