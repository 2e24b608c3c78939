# Two commands: `make repro` (install, then run the pipeline) and `make test`.
# Installation is idempotent: a stamp file records that .venv matches requirements.lock.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.lock pyproject.toml | sha256sum | cut -c1-16)

export DVC_NO_ANALYTICS := 1
export MLFLOW_DISABLE_TELEMETRY := true
export DO_NOT_TRACK := true

.PHONY: install repro test test-fast bench release system-deps clean-venv

install: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else "error: Python 3.11 is required (torch==2.13.0 wheel); set PYTHON=python3.11")'
	@$(MAKE) --no-print-directory system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	rm -f $(VENV)/.installed-*
	touch $@

# poppler-utils gives pdfsig/pdftotext/pdftoppm, used by tests to check the dossier independently.
system-deps:
	@command -v pdfsig >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq poppler-utils >/dev/null) \
	      || echo "warning: could not install poppler-utils; PDF checks that need pdfsig will be skipped"; \
	  else echo "note: install poppler-utils for independent PDF signature checks (pdfsig)"; fi; }

repro: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc repro

# Tests run in parallel, one worker per core (pytest-xdist); a file's tests stay on one worker, so module-scoped
# fixtures are built once. PYTEST_WORKERS=0 runs them in one process. OMP_NUM_THREADS=1 and SMOOTHCERT_TORCH_THREADS=1
# (the train stage's torch threads, default 2): one worker per core, each single-threaded; two-thread OpenMP regions
# of two workers on two cores spin against each other and slowed torch training 12-30x (1.3 s alone, 15 s beside a
# second two-thread training; CI's dvc-run tests timed out at 0.06 batches/s). OMP_WAIT_POLICY=PASSIVE instead costs
# 4-10x when a core is idle.
PYTEST_WORKERS ?= auto
PYTEST := PATH="$(CURDIR)/$(BIN):$$PATH" OMP_NUM_THREADS=1 SMOOTHCERT_TORCH_THREADS=1 $(BIN)/python -m pytest -q -n $(PYTEST_WORKERS) --dist loadfile

test: install
	$(PYTEST)

# The inner loop: everything but the tests marked slow (real dvc runs, trainings, the cluster recipe).
test-fast: install
	$(PYTEST) -m "not slow"

bench: install
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/certify_throughput.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/sequential_vs_fixed.py
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/ray_scaling.py --examples 40 --repeats 1
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python benchmarks/training_methods.py --sigmas 0.25,0.5 --epochs 3 --n 2000 --examples 200 --macer-k 2 --threads 1 --out benchmarks/results/training_methods_reduced.json

# Release: upload the DVC-cached outputs of the last `make repro` (model, data splits, results: the files the
# dossier names by hash) to the default DVC remote, so an auditor's clone can `dvc pull` them. The default remote
# is the folder ../smoothcert-dvc-remote beside the repository (.dvc/config); REMOTE=name pushes to another.
release:
	@test -x $(BIN)/dvc || { echo "error: $(BIN)/dvc not found; run make repro first" >&2; exit 2; }
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/dvc push $(if $(REMOTE),--remote $(REMOTE))

clean-venv:
	rm -rf $(VENV)
