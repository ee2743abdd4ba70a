# Two entry points for a fresh Debian machine with Python 3.11: `make demo` and `make test`.
# Both create (or reuse) ./.venv and install the pinned dependencies (CPU PyTorch).
PYTHON ?= python3.11
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
OUT    ?= out/demo
PYTEST_ARGS ?=

.PHONY: demo test venv clean bench browser

venv: $(STAMP)

$(STAMP): requirements.lock pyproject.toml
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "error: $(PYTHON) not found (set PYTHON=/path/to/python3.11)"; exit 2; }
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.lock
	# Installed without their declared deps (already pinned in the lock): facenet-pytorch pins an
	# old torch/torchvision (only its MTCNN weight files are used); mediapipe is never imported (only
	# its .tflite model files are read); gradio declares pillow<13.
	$(PY) -m pip install --quiet --no-deps facenet-pytorch==2.6.0 mediapipe==0.10.14 gradio==6.31.0
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	# First-run work now, not in the first `make demo`: one 1-step reconstruction of the demo photo
	# compiles the numba kernels (cached beside their sources, or in $$NUMBA_CACHE_DIR) and builds
	# the caches under $$FACEGCN_CACHE (default ~/.cache/facegcn): mesh hierarchy, identity weights.
	$(PY) -c 'from facegcn.pipeline.runtime import warm_up; print("facegcn warm-up (numba kernels, caches): %.0f s" % warm_up()["total_s"])'
	@touch $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/facegcn demo -o $(OUT)

test: $(STAMP) browser
	$(PY) -m pytest -n 2 $(PYTEST_ARGS)

# Debian's Chromium for the web-demo browser test (best effort: needs root + apt; the test skips
# cleanly without it). No browser is ever downloaded by a test tool.
browser:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null) \
		|| echo "note: could not install chromium; the browser test will be skipped"; fi

bench: $(STAMP)
	$(PY) benchmarks/run_all.py

clean:
	rm -rf $(VENV) out .pytest_cache
