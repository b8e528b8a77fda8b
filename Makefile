# membra: the two commands a new user needs are `make demo` and `make test`.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.membra-installed
# torch is installed once from the pinned CPU wheel and never upgraded afterwards.
TORCH_PIN := torch==2.13.0
EXTRAS ?= dev

.PHONY: setup demo test test-all bench bench-peers triton-interp test-triton lint clean

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PY) -m venv $(VENV)
	@$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q "$(TORCH_PIN)"
	@$(BIN)/python -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/torch-constraint.txt
	$(BIN)/python -m pip install -q -c $(VENV)/torch-constraint.txt -e ".[$(EXTRAS)]"
	@touch $(STAMP)

# The main job: train a spiking MLP with a learnable initial potential on the bundled digits.
demo: setup
	$(BIN)/membra train configs/digits_imp_lts.toml

test: setup
	$(BIN)/python -m pytest -m "not slow and not gpu" -n 2

test-all: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python -m membra.bench.run --out benchmarks/results

# The peer libraries (SpikingJelly, snnTorch, Norse) go into a separate venv that sees the main
# one's packages (torch 2.13.0 included) through a .pth file, so torch is never reinstalled and
# the constraint file holds it. SpikingJelly 2.0.0 goes in without its dependency list (it
# names torchvision/torchaudio, whose import fails with this torch) plus what its neuron
# modules import. Norse 1.1.0 is an sdist (its metadata says 0.0.0, so it is installed from the
# file): built against the installed torch, no build isolation.
# $(call side-venv,DIR): a venv in DIR that sees the main venv's packages through a .pth file.
purelib = $$($(1)/bin/python -c "import sysconfig; print(sysconfig.get_path('purelib'))")
define side-venv
	@test -x $(1)/bin/python || $(BIN)/python -m venv $(1)
	@echo "import site; site.addsitedir('$(call purelib,$(VENV))')" > "$(call purelib,$(1))/membra-main-venv.pth"
endef
PEERS := .venv-peers
bench-peers: setup
	$(call side-venv,$(PEERS))
	$(PEERS)/bin/python -m pip install -q -c $(VENV)/torch-constraint.txt "setuptools>=68" wheel
	$(PEERS)/bin/python -m pip install -q -c $(VENV)/torch-constraint.txt --no-deps spikingjelly==2.0.0
	$(PEERS)/bin/python -m pip install -q -c $(VENV)/torch-constraint.txt "loguru>=0.7,<1" packaging tqdm snntorch==1.0.0
	-$(PEERS)/bin/python -m pip download -q --no-deps --no-binary norse -d $(PEERS)/sdist norse==1.1.0 && \
	  $(PEERS)/bin/python -m pip install -q -c $(VENV)/torch-constraint.txt --no-build-isolation --no-deps $(PEERS)/sdist/norse-1.1.0.tar.gz && \
	  $(PEERS)/bin/python -m pip install -q -c $(VENV)/torch-constraint.txt nirtorch
	$(PEERS)/bin/python -m membra.bench.run --out benchmarks/results

# Triton in a side venv (as the peers): `make test-triton` runs the Triton kernels of every
# neuron model in Triton's CPU interpreter (TRITON_INTERPRET=1, no GPU needed) against the
# reference (tests marked `triton`; docs/kernels.md, "Triton").
TRITON := .venv-triton
TRITON_PIN := triton==3.9.0
triton-interp: setup
	$(call side-venv,$(TRITON))
	@$(TRITON)/bin/python -c "import triton" 2>/dev/null || \
	  $(TRITON)/bin/python -m pip install -q -c $(VENV)/torch-constraint.txt "$(TRITON_PIN)"

test-triton: triton-interp
	TRITON_INTERPRET=1 $(TRITON)/bin/python -m pytest -m triton tests/kernels

lint: setup
	$(BIN)/ruff check src tests

clean:
	rm -rf $(VENV) $(PEERS) $(TRITON) build dist src/*.egg-info .pytest_cache
