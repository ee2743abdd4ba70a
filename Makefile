# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
# Both create (or reuse) ./.venv and install the pinned dependencies (CPU PyTorch).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
PYTEST_ARGS ?=

.PHONY: demo test venv clean bench lint

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	# facenet-pytorch pins an old torch/torchvision; only its MTCNN weight files are used.
	$(PY) -m pip install --quiet --no-deps facenet-pytorch==2.6.0
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/facegcn demo -o $(OUT)

test: $(STAMP)
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache
