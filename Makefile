# openseed: `make demo` runs the main job on the embedded default; `make test` runs the test suite.
VENV ?= $(or $(OPENSEED_VENV),.venv)
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export WANDB_MODE := offline
export OPENSEED_REFDATA ?= $(abspath ../shared/refdata)

.PHONY: setup test test-fast lint demo web browser clean

setup:
	OPENSEED_VENV=$(VENV) bash scripts/setup.sh

test: setup
	$(PY) -m pytest tests -q

test-fast: setup
	$(PY) -m pytest tests -q -m "not slow"

lint: setup
	$(PY) -m ruff check openseed tools tests

demo: setup
	$(PY) tools/run_demo.py --config-file configs/demo/openseed_demo.yaml --output output/demo

web: setup
	$(PY) tools/web_demo.py --config-file configs/demo/openseed_demo.yaml --weights output/demo/model_final.pth

# headless Chromium and its driver from Debian, for tests/tools/test_web_demo_browser.py (needs root; idempotent)
browser:
	bash scripts/install_browser.sh

clean:
	rm -rf output .pytest_cache
