# Set-up and everyday commands. `make run` and `make test` each do all set-up on a fresh Debian machine:
# the Debian packages they need (apt-get as root, sudo otherwise), then the virtualenv.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
FMNIST := /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz
SYSTEM_PACKAGES := python3-venv dataset-fashion-mnist

.PHONY: run test test-all lint bench clean system

# Installs the Debian packages once (skipped when they are present): as root, with sudo otherwise.
$(FMNIST):
	@if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo > /dev/null; then SUDO=sudo; else \
		echo "make: need root or sudo to install the Debian packages $(SYSTEM_PACKAGES); install them, then rerun" >&2; \
		exit 2; fi; \
	$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(SYSTEM_PACKAGES) > /dev/null
	@test -f $@ || { echo "make: dataset-fashion-mnist installed but $@ is missing" >&2; exit 2; }

system: $(FMNIST)

$(STAMP): pyproject.toml | $(FMNIST)
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

# The main job: train the default model on Fashion-MNIST (fixed length, under 15 min on the slowest 2-core CPU
# seen) into runs/<time>/, then print test top-1 of the final epoch and the wall time. EPOCHS=1 shortens it (CI).
EPOCHS ?= 12
RUN_DIR ?= runs/fashion-mnist-$(shell date +%Y%m%d-%H%M%S)
run: $(STAMP)
	$(BIN)/mobilenets train --model mobilenet_v1_025 --stem-stride 1 --data fashion-mnist --recipe main \
		--epochs $(EPOCHS) --channels-last -o $(RUN_DIR)

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
