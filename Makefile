# Two commands on a fresh machine:
#   make demo   installs everything and prints a real completion from the embedded model
#   make test   installs everything and runs the test suite (what .ci/run calls)

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: install demo test editors llama-server clean

install: $(STAMP)

# pip caches the llama-cpp-python wheel it builds (about 6 minutes on 2 cores), so a
# second install, or a fresh clone on the same machine, reuses it. It is built without
# AMX kernels (scripts/llama-cflags.sh says why), after any CMAKE_ARGS of your own.
LLAMA_CFLAGS := $(shell bash scripts/llama-cflags.sh)
LLAMA_CMAKE_ARGS := $(CMAKE_ARGS)$(if $(LLAMA_CFLAGS), -DCMAKE_C_FLAGS='$(LLAMA_CFLAGS)' -DCMAKE_CXX_FLAGS='$(LLAMA_CFLAGS)')

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: install
	$(BIN)/ghostpilot doctor
	@echo "--- ghostpilot complete examples/sample.py:20:5"
	$(BIN)/ghostpilot complete examples/sample.py:20:5

# Real editors for the editor tests (apt packages, code-server, the .vsix); each step is
# cached and skipped when already done.
editors: install
	bash scripts/setup-editors.sh

# llama-server for the remote-engine tests (tests/e2e/test_remote_*.py), cached under
# ~/.cache/ghostpilot: 15-30 min on 2 cores the first time. Where it cannot build, those
# tests skip with the reason, except under CI=true, where this fails.
llama-server: install
	bash scripts/build-llama-server.sh || [ "$${CI:-}" != "true" ]

test: install editors llama-server
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) .pytest_cache artifacts
