# cnnbench — `make train` and `make test` work on a fresh clone with nothing installed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install dataset train test test-fast lint clean help

help:
	@echo "make install    create $(VENV), install cnnbench[dev], install Fashion-MNIST (Debian package)"
	@echo "make train      the main job: ResNet-20 on Fashion-MNIST, CPU"
	@echo "make test       the whole test suite (<= 40 min on 2 cores)"
	@echo "make test-fast  tests not marked slow (<= 5 min)"

install: $(VENV)/.installed dataset

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade --quiet pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $@

dataset:
	@if [ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte.gz ] || [ -f $(FASHION_DIR)/t10k-labels-idx1-ubyte ]; then \
		echo "Fashion-MNIST: $(FASHION_DIR)"; \
	elif command -v apt-get >/dev/null && [ "$$(id -u)" = 0 ]; then \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	elif command -v apt-get >/dev/null && command -v sudo >/dev/null && sudo -n true 2>/dev/null; then \
		sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist; \
	else \
		echo "Fashion-MNIST is missing. Install the Debian package: sudo apt-get install dataset-fashion-mnist"; \
		echo "or without root: apt-get download dataset-fashion-mnist && dpkg-deb -x dataset-fashion-mnist_*.deb DEST"; \
		echo "and pass data.root=DEST/usr/share/datasets/fashion-mnist (or set CNNBENCH_FASHION_MNIST)."; \
	fi

train: install
	$(BIN)/cnnbench train

test: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q

test-fast: install
	WANDB_MODE=disabled $(BIN)/python -m pytest -q -m "not slow"

lint: install
	$(BIN)/ruff check cnnbench tests

clean:
	rm -rf outputs multirun .pytest_cache
