# Two commands for a fresh machine: `make demo` and `make test`. Each creates or reuses .venv and installs the exact,
# tested set in requirements-lock.txt. torch is pinned to the machine's CPU wheel first so no later requirement can
# pull the CUDA build. `make test-latest` checks the newest releases setup.py allows, in a separate .venv-latest.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
LOCK := requirements-lock.txt
TORCH_SPEC ?= torch==2.13.0
VENV_LATEST := .venv-latest
PY_LATEST := $(VENV_LATEST)/bin/python
OFFLINE := HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

.PHONY: demo test test-latest setup clean

$(STAMP): setup.py pyproject.toml $(LOCK)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip setuptools wheel
	$(PY) -m pip install -q -c $(LOCK) "$(TORCH_SPEC)"
	$(PY) -m pip install -q -c $(LOCK) -e ".[dev]"
	$(PY) -m pip check
	touch $(STAMP)

setup: $(STAMP)

test: $(STAMP)
	$(OFFLINE) $(PY) -m pytest -q tests

demo: $(STAMP)
	$(OFFLINE) $(PY) -m infimed.demo $(DEMO_ARGS)

# The newest releases setup.py allows (torch stays the machine's wheel): always re-resolved, so a new upstream release
# is picked up at the next run. Runs the tests marked `upstream` (modeling, processor, remote code, packed-SFT parity,
# evaluation) and prints the versions it tested.
test-latest:
	test -x $(PY_LATEST) || $(PYTHON) -m venv $(VENV_LATEST)
	$(PY_LATEST) -m pip install -q --upgrade pip setuptools wheel
	echo "$(TORCH_SPEC)" > $(VENV_LATEST)/torch-pin.txt
	$(PY_LATEST) -m pip install -q -c $(VENV_LATEST)/torch-pin.txt "$(TORCH_SPEC)"
	$(PY_LATEST) -m pip install -q --upgrade --upgrade-strategy eager -c $(VENV_LATEST)/torch-pin.txt -e ".[dev]"
	$(PY_LATEST) -m pip check
	$(PY_LATEST) -m pip freeze --exclude-editable | grep -i -E "^(torch|transformers|trl|peft|datasets|accelerate|huggingface.hub|evaluate|tokenizers|safetensors)=="
	$(OFFLINE) $(PY_LATEST) -m pytest -q -m upstream tests

clean:
	rm -rf $(VENV) $(VENV_LATEST) demo-output
