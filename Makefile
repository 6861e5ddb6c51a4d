# The two set-up commands (see README): `make demo` runs the main job, `make test` runs the tests.
# Both install what they need first (idempotent), so either works on a fresh clone.
SHELL := /bin/bash
PY := .venv/bin/python
RUN_DIR ?= runs/demo
# Test workers (pytest-xdist): one per core, at most 4 (each holds TF, JAX and torch: ~3 GB).
PYTEST_WORKERS ?= $(shell n=$$(nproc 2>/dev/null || echo 1); echo $$(( n < 4 ? n : 4 )))
PYTEST_PARALLEL = -n $(PYTEST_WORKERS) --dist loadfile

.PHONY: setup setup-hf setup-demo setup-test setup-interop demo test test-pod test-fast test-interop bench clean

setup:
	@scripts/setup.sh

setup-hf:
	@scripts/setup.sh --hf

# The main job's set-up: the core environment plus the SmolLM2 GGUF file it evaluates (not the hf extra's torch).
setup-demo:
	@scripts/setup.sh --models

setup-test:
	@scripts/setup.sh --hf --browser --tpu --lmeval --beam

## Main job: train the `small` model on the built-in corpus, report perplexity, sample, plot; evaluate it beside
## a real pretrained model (SmolLM2-135M-Instruct, imported from the GGUF file setup-demo caches).
demo: setup-demo
	@scripts/demo.sh $(RUN_DIR)

## Full test suite (includes HF parity tests, the report's browser check, the TPU ahead-of-time
## compiles, lm-evaluation-harness and the Beam preprocessing into ArrayRecord, so it installs the optional
## torch/transformers, libtpu, lm-eval and beam extras and a headless chromium).
test: setup-test
	@$(PY) -m pytest tests $(PYTEST_PARALLEL) $(PYTEST_ARGS)

## The TPU compile tests plus the 370M baseline compiled on its own and XLA's own FLOP count of the 370M patch config's steps (its two stages
## again and 4 unrolled compiles: ~4.5 min); the 370M configs themselves compile in every `make test`.
test-pod: setup-test
	@AOT_POD_TESTS=1 $(PY) -m pytest tests/aot $(PYTEST_ARGS)

## Interop checks against implementations we did not write, recomputed live: the GGUF import against
## transformers' own GGUF loader on SmolLM2 (`make test` compares against its committed numbers), and our
## HTTP client and evals against llama.cpp's OpenAI-compatible server on the same GGUF (tests/interop; the
## `interop` extra compiles llama.cpp the first time, minutes on 2 cores; `make test` never installs it and
## skips those tests, saying why, where it is absent).
setup-interop:
	@scripts/setup.sh --hf --browser --tpu --lmeval --beam --interop

test-interop: setup-interop
	@GGUF_LIVE=1 $(PY) -m pytest tests/hf/test_gguf_import.py tests/interop $(PYTEST_ARGS)

## Quick loop while developing: skip the slow end-to-end tests.
test-fast: setup
	@$(PY) -m pytest tests -m "not slow" $(PYTEST_PARALLEL) $(PYTEST_ARGS)

clean:
	rm -rf runs .pytest_cache
