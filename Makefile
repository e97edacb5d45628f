# Two entry points for a fresh machine: `make demo` and `make test`. Both create .venv if needed.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# Re-install whenever the dependency list changes.
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-all clean sample-data

$(INSTALLED): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[train,dev]'
	touch $@

test: $(INSTALLED)
	$(PY) -m pytest -q -m "not slow"

test-all: $(INSTALLED)
	$(PY) -m pytest -q

sample-data: $(INSTALLED)
	$(PY) sample_data/generate.py

clean:
	rm -rf $(VENV) .pytest_cache results.csv results.summary.json
