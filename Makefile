# Everything a fresh clone needs: `make demo` runs the demo, `make test` runs the tests.
PYTHON ?= python3
VENV := .venv
UPSTREAM := .venv-upstream
PY := $(VENV)/bin/python

.PHONY: setup system-deps bench-deps demo test lint bench bench-daemon man completions deb clean

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
	$(VENV)/bin/ruff check fowld fowlctl harness tests bench packaging

test: setup lint
	FOWL_UPSTREAM_PYTHON=$(UPSTREAM)/bin/python $(VENV)/bin/pytest -q

# sshd and ssh for the forwarding benchmark's OpenSSH row. Not fatal: without them (or
# without root) the benchmark skips that row and says so.
bench-deps:
	-@sh packaging/ensure-system-deps.sh bench

bench: setup bench-deps
	FOWL_UPSTREAM_PYTHON=$(UPSTREAM)/bin/python $(PY) -m bench forwarding

bench-daemon: setup
	$(PY) -m bench daemon

# Man pages and shell completions generated from the argument parsers, committed under
# fowld/data/ (tests/test_manpages.py and tests/test_completions.py say when they are stale).
man: $(VENV)/.installed
	$(PY) packaging/generate.py man

completions: $(VENV)/.installed
	$(PY) packaging/generate.py completions

# dist/fowld_VERSION_ARCH.deb, built by dpkg-buildpackage (installs its build
# dependencies with apt when root). Check it with FOWL_SLOW=1 .venv/bin/pytest tests/test_deb.py
deb:
	sh packaging/build-deb.sh

clean:
	rm -rf $(VENV) $(UPSTREAM) build dist *.egg-info .pytest_cache .ruff_cache .hypothesis
