# Set-up and everyday commands. `make run` and `make test` work on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-all lint bench clean

$(STAMP): pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: train the default model on Fashion-MNIST (fixed length: 8 epochs, ~13 min on a quiet 2-core CPU) into runs/<time>/,
# then print test top-1 and the total wall time. `mobilenets zoo` lists every model's published figures.
RUN_DIR ?= runs/fashion-mnist-$(shell date +%Y%m%d-%H%M%S)
run: $(STAMP)
	$(BIN)/mobilenets train --model mobilenet_v1_025 --stem-stride 1 --data fashion-mnist --recipe fast \
		--epochs 8 --channels-last -o $(RUN_DIR)

# The default test run (slow tests deselected; `make test-all` runs them too).
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-all: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check src tests benchmarks
	$(BIN)/ruff format --check src tests benchmarks

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
