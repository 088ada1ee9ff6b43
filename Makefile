# sidflow: `make run` and `make test` are all a fresh machine needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

export DVC_NO_ANALYTICS := 1
export BENTOML_DO_NOT_TRACK := true
export DAGSTER_DISABLE_TELEMETRY := 1
export GX_ANALYTICS_ENABLED := false
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: install run serve bento test lint ui clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# Install once per change of pyproject.toml or the lock (constraints pin every package).
# pip takes torch's CPU build from this machine's disk (uv would fetch a CUDA build) and uv;
# uv installs the rest in parallel (~10 s instead of pip's ~4 min). pip does it all if uv fails.
$(STAMP): pyproject.toml requirements.lock | $(BIN)/python
	@echo "installing sidflow into $(VENV) (first time: about a minute)..."
	@{ $(BIN)/python -m pip install torch==2.13.0 "$$(grep '^uv==' requirements.lock)" \
		&& { $(BIN)/uv pip install --python $(BIN)/python -c requirements.lock -e '.[dev]' \
			|| $(BIN)/python -m pip install -c requirements.lock -e '.[dev]'; }; } \
		> $(VENV)/install.log 2>&1 \
		|| { grep -v '^WARNING: Location' $(VENV)/install.log | tail -40; exit 1; }
	@touch $(STAMP)

install: $(STAMP)

run: install
	$(BIN)/sidflow run
	$(BIN)/sidflow simulate

serve: install
	$(BIN)/sidflow serve

# the promoted bundle as a Bento (offline build), in .sidflow/bentoml/bentos
bento: install
	$(BIN)/sidflow build-bento

# ruff (style, formatting) and import-linter (the layers contract in pyproject.toml)
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

# Two pytest workers (pytest-xdist), one test file each at a time (module fixtures such as the
# running BentoML server are built once), one compute thread each (tests/conftest.py): a clean
# clone's `make test` took 11 min 47 s on 2 cores instead of 16 min 48 s in one process.
# `make test TEST_WORKERS=0` runs it in one process.
TEST_WORKERS ?= 2

test: install lint
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

# the Dagster UI on port 3000; it prints how to open the MLflow runs (docs/deployment.md)
ui: install
	$(BIN)/sidflow ui --port 3000

clean:
	rm -rf .sidflow
