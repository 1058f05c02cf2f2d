# Every target creates .venv and installs the package into it, so each works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench weights clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,tracking,openvino]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robustreid demo --out runs/demo

test: $(STAMP)
	$(PY) -m pytest -q

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --out runs/bench

# Retrain the shipped weights (src/robustreid/zoo/) and their cards with this repository's own commands: synthetic
# data of seeds 10-15, robustreid_1x and hacnn, evaluation; resumable (docs/MODEL_ZOO.md gives its time).
weights: $(STAMP)
	$(PY) scripts/make_weights.py --work runs/zoo

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
