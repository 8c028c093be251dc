# The two commands a newcomer needs: `make run` and `make test`. Everything else is optional.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test bench scale clean-data help

help:
	@echo "make run    set up .venv, start the embedded database (unless MONGO_URL is set), migrate, serve on :$${PORT:-8000}"
	@echo "make test   set up .venv, run the whole test suite on a throwaway database"
	@echo "make bench  run the load/growth/floor benchmark (results under bench-results/)"
	@echo "make scale  three hosts behind nginx, one killed mid-load, the database stopped (root; results under bench-results/)"

$(PY):
	@py=$$(scripts/find-python) && echo "Creating $(VENV) with $$py" && "$$py" -m venv $(VENV)

$(STAMP): $(PY) requirements.txt requirements-dev.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $(STAMP)

run: $(STAMP)
	$(PY) -m devtools.run

test: $(STAMP)
	$(PY) -m devtools.testrun $(ARGS)

bench: $(STAMP)
	$(PY) -m bench $(ARGS)

scale: $(STAMP)
	scripts/install-nginx
	$(PY) -m scale $(ARGS)

clean-data:
	rm -rf .data
