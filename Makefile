# Two commands for a newcomer: `make demo` and `make test`. Both create .venv when absent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The CPU wheel pip finds on these machines; never a multi-GB CUDA build on a CPU box.
# GPU users: install your CUDA torch into .venv first and this step is skipped.
TORCH_SPEC ?= torch==2.13.0
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install test test-slow demo lint bench peers clean

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): $(PY) pyproject.toml
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

lint: $(STAMP)
	$(VENV)/bin/ruff check src tests benchmarks

demo: $(STAMP)
	$(VENV)/bin/accelkit demo --out out

# The peer libraries of benchmarks/peers_minilm.py and `bench --peers` (sentence-transformers 5 with
# its ONNX/OpenVINO backends, optimum-intel) pin transformers 4.57, so they live in their own venv,
# never in `make test`'s.
peers: .venv-peers/.installed

.venv-peers/.installed: pyproject.toml
	$(PYTHON) -m venv .venv-peers
	.venv-peers/bin/python -c "import torch" 2>/dev/null || .venv-peers/bin/python -m pip install -q "$(TORCH_SPEC)"
	.venv-peers/bin/python -m pip install -q -e ".[peers]"
	touch $@

clean:
	rm -rf out .pytest_cache
