# Every target creates .venv and installs the package into it, so each works on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test bench weights browser clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,tracking,openvino,search,faiss,milvus]'
	touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/robustreid demo --out runs/demo

test: $(STAMP) browser
	$(PY) -m pytest -q

# The browser of the search page's test (tests/test_search_browser.py): Debian's chromium and its driver, installed
# with apt-get when missing and apt-get can run (as root); elsewhere this says so and the test skips with a reason
# (or fails, with REQUIRE_BROWSER=1). Never fails the build; instant when both are on PATH. A failed install is
# not retried until $(VENV)/.browser-tried is removed.
browser:
	@if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then :; \
	elif [ -e $(VENV)/.browser-tried ]; then \
		echo "make browser: installing chromium failed before (rm $(VENV)/.browser-tried to retry); the browser test will skip"; \
	elif command -v apt-get >/dev/null 2>&1 && [ "$$(id -u)" = 0 ]; then \
		log=$$(mktemp); \
		if ! (DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q chromium chromium-driver >$$log 2>&1 || \
		      (DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >$$log 2>&1 && \
		       DEBIAN_FRONTEND=noninteractive timeout 300 apt-get install -y -q chromium chromium-driver >$$log 2>&1)); then \
			err=$$(grep -E '^(E|Err):' $$log | tail -n 1); [ -n "$$err" ] || err=$$(tail -n 1 $$log); \
			mkdir -p $(VENV) && touch $(VENV)/.browser-tried; \
			echo "make browser: apt-get could not install chromium chromium-driver ($${err:-timed out}); the browser test will skip"; \
		fi; \
		rm -f $$log; \
	else echo "make browser: no chromium here and no apt-get as root; the browser test will skip"; fi; true

bench: $(STAMP)
	$(PY) benchmarks/run_all.py --out runs/bench

# Retrain the shipped weights (src/robustreid/zoo/) and their cards with this repository's own commands: synthetic
# data of seeds 10-15, robustreid_1x and hacnn, evaluation; resumable (docs/MODEL_ZOO.md gives its time).
weights: $(STAMP)
	$(PY) scripts/make_weights.py --work runs/zoo1

clean:
	rm -rf $(VENV) build *.egg-info src/*.egg-info
