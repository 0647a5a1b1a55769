# devid: `make serve` runs the CA on the embedded default (SQLite), `make test` runs every test.
# Both create or refresh .venv and install what they need, Debian packages included.

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.devid-installed
DATA   ?= data
LISTEN ?= 127.0.0.1:8443

.PHONY: serve test lint bench fuzz deps clean

$(STAMP): pyproject.toml scripts/install-system-deps
	./scripts/install-system-deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

deps: $(STAMP)

serve: $(STAMP)
	$(BIN)/devid serve --data $(DATA) --listen $(LISTEN) --log-format text

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The example plugin (examples/hmac-provisioner) is a distribution of its own: installed into
# the venv once per change of its pyproject.toml, and tested through the plugin test kit
# after devid's own suite.
EXAMPLE_STAMP := $(VENV)/.devid-hmac-example-installed

$(EXAMPLE_STAMP): $(STAMP) examples/hmac-provisioner/pyproject.toml
	$(BIN)/python -m pip install --quiet -e examples/hmac-provisioner
	touch $(EXAMPLE_STAMP)

# The npm packages the tests start as real peers (oauth2-mock-server as an OpenID provider),
# installed from package-lock.json into node_modules once per change of it.
NODE_STAMP := node_modules/.devid-installed

$(NODE_STAMP): package.json package-lock.json
	@command -v npm >/dev/null || { echo "make test needs Node.js 20.19 or later with npm"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	touch $(NODE_STAMP)

test: lint $(EXAMPLE_STAMP) $(NODE_STAMP)
	$(BIN)/python -m pytest -q
	$(BIN)/python -m pytest -q examples/hmac-provisioner/tests

# `make bench` installs the bench extra (matplotlib, for the plot) on top of the test extra,
# once per pyproject.toml change. BENCH_ARGS passes options, e.g. BENCH_ARGS=--quick.
BENCH_STAMP := $(VENV)/.devid-bench-installed

$(BENCH_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,bench]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP)
	$(BIN)/python -m benchmarks $(BENCH_ARGS)

# `make fuzz` installs the fuzz extra (atheris) and runs every fuzz target for FUZZ_RUNS
# executions each (default 1,000,000), one after another; FUZZ_ARGS passes options,
# e.g. FUZZ_ARGS="--target csr --no-corpus-update". See fuzz/README.md.
FUZZ_STAMP := $(VENV)/.devid-fuzz-installed
FUZZ_RUNS  ?= 1000000

$(FUZZ_STAMP): $(STAMP) pyproject.toml
	$(BIN)/python -m pip install --quiet -e '.[test,fuzz]'
	touch $(FUZZ_STAMP)

fuzz: $(FUZZ_STAMP)
	$(BIN)/python -m fuzz --runs $(FUZZ_RUNS) $(FUZZ_ARGS)

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache node_modules
