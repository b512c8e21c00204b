# Two entry points (see README): `make run` (set up + main job) and `make test` (set up + test suite).
# Both create .venv on first use; a second run reuses it (the stamp file is newer than pyproject.toml).
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.mmkd-installed
PIP    := $(BIN)/python -m pip --disable-pip-version-check -q
export OMP_NUM_THREADS ?= 2
export TOKENIZERS_PARALLELISM = false
export GRADIO_ANALYTICS_ENABLED = False
export HF_HUB_DISABLE_TELEMETRY = 1

.PHONY: setup run test test-fast bench clean

setup: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	@echo "[setup] installing the torch triple (constraints.txt), then mmkd-hf with dev extras..."
	$(PIP) install -r constraints.txt 2>&1 | grep -v "^WARNING: Location" || true
	$(PIP) install -c constraints.txt -e ".[dev]" 2>&1 | grep -v "^WARNING: Location" || true
	@$(BIN)/python -c "import torch, torchvision, torchaudio, mmkd_hf; print('[setup] ok: torch', torch.__version__)"
	@touch $(STAMP)

run: $(STAMP)
	$(BIN)/accelerate launch --num_processes 1 --num_machines 1 --mixed_precision no --dynamo_backend no train.py $(ARGS)

test: $(STAMP)
	@bash tests/setup_browser.sh || true
	$(BIN)/python -m pytest tests $(PYTEST_ARGS)

bench: $(STAMP)
	$(BIN)/python benchmarks/model_speed.py

clean:
	rm -rf $(VENV) outputs .cache
