# Two commands are the contract (see README):
#   make reproduce   run the notebooks under PROFILE (default cpu; PROFILE=paper on a GPU)
#   make test        unit tests + nbval over the committed notebooks
# Each target creates .venv with the project installed when it is missing or stale.

PYTHON     ?= python3
VENV       ?= .venv
PROFILE    ?= cpu
# torch is installed first and only if the venv has none: the pinned CPU build
# is what CI and the dev machines use; override, e.g. TORCH_SPEC=torch, on a GPU box.
TORCH_SPEC ?= torch==2.13.0
ONLY       ?=
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.cdpkd-installed

.PHONY: setup reproduce test lint clean-smoke notebooks

setup: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_SPEC)"
	$(PY) -m pip install --quiet -e ".[dev]"
	@touch $(STAMP)

reproduce: setup
	$(PY) -m cdpkd.pipeline --profile $(PROFILE) $(if $(ONLY),--only $(ONLY),)

test: setup
	$(PY) -m pytest

lint: setup
	$(PY) -m ruff check lib tests benchmarks studies notebooks

clean-smoke:
	rm -rf results/smoke data/smoke

# Maintainers: re-execute the committed notebooks with their smoke defaults (for nbval).
notebooks: setup
	$(PY) -m cdpkd.nbtools execute notebooks/[0-9][0-9]_*.ipynb
