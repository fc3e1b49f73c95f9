# Every target sets itself up: a virtualenv in .venv, installed from pyproject.toml.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
CONFIG ?= configs/local.yaml
# compiled by setup.py (C, mypyc): a change rebuilds them
NATIVE := processors/genai/index.py processors/genai/analysis.py processors/genai/models.py \
          processors/genai/tools.py processors/genai/write.py processors/genai/content.py \
          pipeline/exporters/dataset/examples.py \
          pipeline/wiresplit.py pipeline/wholetraces.py

# Python may write its bytecode caches (__pycache__, ignored by git) even where the
# environment says not to: the suite starts hundreds of interpreters (collectors, CLI
# runs, benchmark cases, xdist workers), each of which would compile the project again
unexport PYTHONDONTWRITEBYTECODE

# pytest-xdist workers for `make test`: most tests wait on sockets and child processes, so
# more workers than cores (2 here) pays; docs/internals/testing.md
JOBS   ?= 4
PYTEST := $(PY) -m pytest -q -n $(JOBS) --dist worksteal

.PHONY: run test test-pure test-image bench check fmt kafka fuzz clean chromium

$(STAMP): pyproject.toml setup.py pipeline/_wirescan.c pipeline/_jsonwire.c $(NATIVE)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	TRACESIEVE_NATIVE=require $(PY) -m pip install -q -e '.[test,dev]'
	touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/tracesieve run --config $(CONFIG)

test: $(STAMP) chromium
	$(PYTEST) $(PYTEST_ARGS)

# the pipeline and processor tests once more with everything as Python (no _wirescan, no
# mypyc module): what runs where no compiler was (pipeline/native.py)
test-pure: $(STAMP)
	TRACESIEVE_PURE_PYTHON=1 $(PYTEST) tests/pipeline tests/processors tests/test_native.py

# the Docker build stage's wheel, from the files the Dockerfile copies (compiles: ~35 s)
test-image: $(STAMP)
	$(PY) -m pytest -q -m image tests/test_image.py

# Debian's chromium, for the tests that open pages in a real browser (tests/browser.py)
chromium:
	@command -v chromium >/dev/null || { \
	  echo "installing Debian's chromium (apt) for the browser tests"; \
	  SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
	  $$SUDO apt-get update -q >/dev/null && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q --no-install-recommends chromium >/dev/null; }

bench: $(STAMP)
	$(PY) -m benchmarks.run $(BENCH_ARGS)

check: $(STAMP)
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

fmt: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

kafka: $(STAMP)
	$(PY) -m tests.kafka_broker --port $${PORT:-9092}

fuzz: $(STAMP)
	FUZZ_EXAMPLES=$${FUZZ_EXAMPLES:-20000} $(PY) -m pytest -q tests/fuzz

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
	find pipeline processors -name "*.so" -delete; rm -f *__mypyc*.so
