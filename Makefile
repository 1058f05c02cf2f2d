# Every target creates .venv and installs the package into it, so each works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench clean

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

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
