# membra: the two commands a new user needs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.membra-installed
# torch is installed once from the pinned CPU wheel and never upgraded afterwards.
TORCH_PIN := torch==2.13.0
EXTRAS ?= dev

.PHONY: setup demo test test-all bench lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_PIN)"
	@$(BIN)/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-constraint.txt
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

demo: setup
	$(BIN)/python -m membra.demo

test: setup
	$(BIN)/python -m pytest -m "not slow and not gpu" -n 2

test-all: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m benchmarks.run

lint: setup
	$(BIN)/ruff check src tests benchmarks

clean:
	rm -rf $(VENV) build dist src/*.egg-info .pytest_cache
