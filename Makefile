# Two commands: `make demo` runs the main job, `make test` runs the test suite.
# Each creates the virtual environment on first use.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test venv benchmark notebooks clean

$(STAMP): setup.py setup.cfg
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/labelmeta demo

test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist worksteal

notebooks: $(STAMP)
	$(PY) notebooks/execute.py

benchmark: $(STAMP)
	$(PY) benchmarks/noisy_labels.py --jobs 2

clean:
	rm -rf $(VENV) *.egg-info
