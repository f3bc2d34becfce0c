# pydevts developer commands. Needs only python3 (3.11+), pip, git and make.
#   make demo   - start a 3-node cluster on loopback and show what each node received
#   make test   - the whole test suite (asyncio and trio)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DISTS := pydevts_core pydevts_transports/tcp pydevts_transports/quic pydevts_routers/peer pydevts_routers/hop pydevts_serializers/msgpack \
	pydevts_serializers/pickle pydevts_plugins/prometheus pydevts_plugins/otel
EXAMPLE_PACKAGES := examples/connection_plugin examples/third_party_router
PYPROJECTS := pyproject.toml $(addsuffix /pyproject.toml,$(DISTS) $(EXAMPLE_PACKAGES))

.PHONY: install check-python venv demo test test-fast lint bench wheels clean

# Which interpreter a Python is: a venv reports the installation it was made from (base_prefix),
# so $(PYTHON) and $(VENV)'s python print the same line exactly when $(VENV) was made by $(PYTHON).
PYTHON_ID := import sys; print(sys.implementation.name, '.'.join(map(str, sys.version_info[:3])), sys.base_prefix)

install: check-python
	@# (a second make: whether $(STAMP) is up to date is decided only after check-python ran)
	@$(MAKE) --no-print-directory venv

venv: $(STAMP)
	@:

# $(PYTHON) must be 3.11+; a $(VENV) made by another Python (`PYTHON=python3.12 make demo`, then
# plain `make demo`) is made again, rather than failing with "requires a different Python".
check-python:
	@if ! $(PYTHON) -c 'import sys; sys.exit(sys.version_info < (3, 11))' >/dev/null 2>&1; then \
		found="$$($(PYTHON) -c 'import sys; sys.stdout.write("Python " + sys.version.split()[0])' 2>/dev/null \
			|| echo 'not a Python that runs here')"; \
		echo "error: pydevts needs Python 3.11 or newer, but PYTHON=$(PYTHON) is $$found." >&2; \
		echo "       Name a newer one, e.g.: make $(or $(MAKECMDGOALS),install) PYTHON=python3.12" >&2; \
		if [ -x $(BIN)/python ]; then echo "       ($(VENV) has $$($(BIN)/python --version 2>&1).)" >&2; fi; \
		exit 1; \
	fi
	@if [ -e $(VENV) ]; then \
		want="$$($(PYTHON) -c "$(PYTHON_ID)")"; \
		have="$$($(BIN)/python -c "$(PYTHON_ID)" 2>/dev/null)"; \
		if [ "$$want" != "$$have" ]; then \
			echo "$(VENV) has $${have:-no working Python}, but PYTHON=$(PYTHON) is $$want: making $(VENV) again"; \
			rm -rf $(VENV); \
		fi; \
	fi

$(STAMP): $(PYPROJECTS) requirements-dev.txt examples/requirements.txt
	@# iproute2 (`ip`) for the network-namespace tests of the hop router (Debian, as root)
	@command -v ip >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 \
		&& apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iproute2 >/dev/null; } \
		|| echo "note: iproute2 is not installed; the network-namespace tests will be skipped"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check \
		$(addprefix -e ,$(DISTS) $(EXAMPLE_PACKAGES)) -e . -r requirements-dev.txt
	@# Editable installs are not compiled by pip: compile once, so that every node process imports
	@# pydevts from bytecode (about half its start-up) even where PYTHONDONTWRITEBYTECODE is set.
	$(BIN)/python -m compileall -q $(addsuffix /src,$(DISTS)) >/dev/null
	touch $(STAMP)

demo: install
	$(BIN)/pydevts demo

test: install
	$(BIN)/python -m pytest

test-fast: install
	$(BIN)/python -m pytest -m "not slow"

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

bench: install
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	$(BIN)/python bench/run.py

wheels: install
	rm -rf dist
	for d in $(DISTS) .; do $(BIN)/python -m build --wheel --outdir dist $$d || exit 1; done

clean:
	rm -rf $(VENV) dist build .pytest_cache .mypy_cache .ruff_cache
