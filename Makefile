# cnnbench — `make train` and `make test` work on a fresh clone with nothing installed.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# pytest-xdist workers; each test process keeps torch to one intra-op thread (tests/conftest.py)
TEST_WORKERS ?= 2
PYTEST := WANDB_MODE=disabled $(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist worksteal
FASHION_DIR := /usr/share/datasets/fashion-mnist

.PHONY: install dataset train test test-fast check-wheel lint clean help

help:
	@echo "make install    create $(VENV), install cnnbench[dev], install Fashion-MNIST (Debian package)"
	@echo "make train      the main job: ResNet-20 on Fashion-MNIST, CPU"
	@echo "make test       the whole test suite (<= 40 min on 2 cores)"
	@echo "make test-fast  tests not marked slow (<= 5 min)"
	@echo "make check-wheel  build the wheel, install it in a fresh venv, run it from a temporary directory"

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
	$(PYTEST)

test-fast: install
	$(PYTEST) -m "not slow"

# The package as a user installs it: the wheel into a fresh virtual environment outside the checkout, then
# from a temporary directory --version, a one-epoch run on digits and a user's own recipe from ./conf.
# The fresh venv borrows its dependencies from $(VENV) (a path line in a .pth file: the directory is searched,
# its own .pth files, the editable cnnbench among them, are not run; pip too) instead of a second ~6 GB torch,
# so the venv is made by $(VENV)'s interpreter, the Python those packages were built for;
# `pip check` then proves the wheel's declared requirements are met, and the import check that cnnbench comes
# from the wheel, not from the checkout.
check-wheel: $(VENV)/.installed
	set -e; tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	$(BIN)/python -m pip wheel --no-deps --quiet -w "$$tmp/dist" .; \
	$(BIN)/python -m venv --without-pip "$$tmp/venv"; \
	deps=$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	site=$$("$$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])'); \
	echo "$$deps" > "$$site/_cnnbench_dependencies.pth"; \
	"$$tmp/venv/bin/python" -m pip install --no-deps --quiet "$$tmp"/dist/cnnbench-*.whl; \
	"$$tmp/venv/bin/python" -m pip check; \
	(cd "$$tmp" && "$$tmp/venv/bin/python" -c 'import cnnbench, sys; \
		sys.exit(0 if cnnbench.__file__.startswith(sys.prefix) else f"cnnbench imported from {cnnbench.__file__}")'); \
	mkdir -p "$$tmp/work/conf/experiment"; cd "$$tmp/work"; \
	printf '# @package _global_\ndefaults:\n  - override /data: digits\noptimizer:\n  lr: 0.05\n' \
		> conf/experiment/my_recipe.yaml; \
	export WANDB_MODE=disabled; cnb="$$tmp/venv/bin/cnnbench"; \
	"$$cnb" --version; \
	"$$cnb" train data=digits trainer.max_epochs=1 hardware=cpu logger=csv run_name=wheel \
		trainer.enable_progress_bar=false; \
	test -f outputs/train/wheel/results.json; \
	"$$cnb" train experiment=my_recipe --cfg job | grep -q 'lr: 0.05'; \
	"$$cnb" train experiment=my_recipe trainer.max_epochs=1 hardware=cpu logger=csv run_name=mine \
		trainer.enable_progress_bar=false; \
	test -f outputs/train/mine/results.json; \
	echo "check-wheel: the installed wheel runs outside the checkout"

lint: install
	$(BIN)/ruff check cnnbench tests

clean:
	rm -rf outputs multirun .pytest_cache
