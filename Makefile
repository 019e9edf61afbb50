# archscale — the README's two commands are `make run` and `make test`.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# torch is pinned and installed first: a CPU wheel of 2.13.0 is on local disk; any looser spec would pull
# a multi-GB CUDA build. Everything else then sees torch already satisfied.
TORCH_SPEC := torch==2.13.0

.PHONY: install run test bench lint format clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH_SPEC)
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

run: install
	$(BIN)/archscale predict llama-3.2-1b llama-3.2-3b panda-1b surefire-1b --gpu h200 --batch-size 1,16,128 --input-len 4096 --output-len 1024

test: install
	$(PY) -m pytest -q -p no:cacheprovider

bench: install
	$(PY) -m pytest -q -p no:cacheprovider tests/benchmarks --benchmark-enable --benchmark-only

lint: install
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

format: install
	$(BIN)/ruff check --fix . && $(BIN)/ruff format .

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .benchmarks
