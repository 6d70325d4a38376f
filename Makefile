# Everything a fresh clone needs: `make demo` runs the demo, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
UPSTREAM := .venv-upstream
PY := $(VENV)/bin/python

.PHONY: setup system-deps demo test lint bench bench-daemon clean

setup: system-deps $(VENV)/.installed $(UPSTREAM)/.installed

# dbus-daemon, busctl, gdbus, systemd-analyze and ip (installed with apt when missing and root).
system-deps:
	@sh packaging/ensure-system-deps.sh

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,bench]'
	touch $@

# Upstream fowl 26.8 is a real peer for interop tests and benchmarks. It lives in its
# own venv because its `fowld` console script would shadow ours.
$(UPSTREAM)/.installed:
	$(PYTHON) -m venv $(UPSTREAM)
	$(UPSTREAM)/bin/pip install -q fowl==26.8.0
	touch $@

demo: setup
	$(PY) -m harness.demo

lint: setup
	$(VENV)/bin/ruff check fowld fowlctl harness tests bench

test: setup lint
	FOWL_UPSTREAM_PYTHON=$(UPSTREAM)/bin/python $(VENV)/bin/pytest -q

bench: setup
	FOWL_UPSTREAM_PYTHON=$(UPSTREAM)/bin/python $(PY) -m bench forwarding

bench-daemon: setup
	$(PY) -m bench daemon

clean:
	rm -rf $(VENV) $(UPSTREAM) build *.egg-info .pytest_cache .ruff_cache .hypothesis
