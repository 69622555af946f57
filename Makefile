# Two commands on a fresh machine:  make study   and   make test
# Both create the virtual environment first if it is missing.

PYTHON  ?= python3
VENV    ?= .venv
PARAMS  ?= params/quick.yaml
BIN      = $(VENV)/bin
# The study's data: $KD_DATA_DIR if set, else the shared folder beside the checkout (if it is there).
KD_DATA_DIR ?= $(wildcard $(abspath ..)/shared/data)
export KD_DATA_DIR

.PHONY: study test test-fast test-browser test-full-shapes venv lab status clean

study: $(VENV)/.installed  ## run every notebook of a profile (default: the offline quick profile)
	$(BIN)/kdstudy run --params $(PARAMS)

test: $(VENV)/.installed  ## unit tests, then every notebook on the smoke profile
	$(BIN)/python -m pytest -q

test-fast: $(VENV)/.installed  ## unit tests only (skips the slow training and notebook tests)
	$(BIN)/python -m pytest -q -m "not slow"

# JupyterLab in headless Chromium: needs Debian's packages (sudo apt-get install chromium chromium-driver).
test-browser: $(VENV)/.installed  ## open 02 in JupyterLab in a real browser, run its sandbox cell, save
	$(BIN)/python -m pytest -q -m browser tests/test_browser.py

# The full profile at the papers' shapes (BERT-base, random weights), offline: longer than CI allows.
test-full-shapes: $(VENV)/.installed  ## every notebook of params/full-shapes.yaml, end to end
	$(BIN)/python -m pytest -q -m full_shapes tests/test_full_shapes.py

venv: $(VENV)/.installed

# constraints.txt pins torch to the CPU build; an unpinned torch would pull several GB of CUDA packages.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip
	$(BIN)/python -m pip install -c constraints.txt -e ".[test,openvino]"
	touch $@

status: $(VENV)/.installed  ## which steps of a profile are up to date, and why the others are not
	$(BIN)/kdstudy status --params $(PARAMS)

# JupyterLab opens the text notebooks (notebooks/*.py, jupytext) as notebooks on a double click, and saves
# them back as text without outputs (jupytext.toml). The setting lives in the virtual environment only.
LAB_SETTINGS = $(VENV)/share/jupyter/lab/settings/overrides.json
lab: $(VENV)/.installed  ## open the notebooks in JupyterLab
	mkdir -p $(dir $(LAB_SETTINGS))
	echo '{"@jupyterlab/docmanager-extension:plugin": {"defaultViewers": {"python": "Jupytext Notebook"}}}' > $(LAB_SETTINGS)
	$(BIN)/jupyter lab notebooks/

clean:  ## remove caches and the smoke profile's outputs (keeps reports/quick)
	rm -rf .cache reports/smoke .pytest_cache
