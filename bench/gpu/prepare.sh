#!/usr/bin/env bash
# Packs what bench/gpu/device.sh needs into .gpu/ (git-ignored through .git/info/exclude), in two
# parts that each fit one device call (64 MiB): stage1 = onnxruntime-gpu's CUDA provider with only
# sm_90 code (H100/H200), stage2 = the rest (ONNX Runtime, the e2llm binary, the gguf wheel, model
# shapes). Run from the repository root after `make setup`.
set -euo pipefail
ORT=1.31.1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p .gpu/stage1 .gpu/stage2
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d "$work" "onnxruntime-gpu==$ORT"
(cd "$work" && unzip -q -o onnxruntime_gpu-*.whl 'onnxruntime/capi/libonnxruntime*')
capi=$work/onnxruntime/capi
python3 bench/gpu/keep_arch.py "$capi/libonnxruntime_providers_cuda.so" "$work/prov_sm90.so" --arch 90
xz -9e -T2 -c "$work/prov_sm90.so" > .gpu/stage1/prov_sm90.so.xz
xz -9 -T2 -c "$capi/libonnxruntime.so.$ORT" > .gpu/stage2/libort.so.xz
cp "$capi/libonnxruntime_providers_shared.so" .gpu/stage2/
strip -o "$work/e2llm" target/release/e2llm
xz -9 -T2 -c "$work/e2llm" > .gpu/stage2/e2llm.xz
.venv/bin/python -m pip download -q --no-deps -d .gpu/stage2 gguf==0.19.0
PYTHONPATH=onnx .venv/bin/python bench/gpu/shaped_random.py like --out .gpu/stage2/like
du -sh .gpu/stage1 .gpu/stage2
