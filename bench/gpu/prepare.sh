#!/usr/bin/env bash
# Packs what the GPU machine needs into .gpu/ (git-ignored via .git/info/exclude), in parts that each
# fit one device call (64 MiB); each staging call copies its part into /tmp/stage there:
#   stage1  onnxruntime-gpu's CUDA provider, sm_90 cubins only (H100/H200)
#   stage2  first half of the decoder GGUF, ONNX Runtime itself
#   stage3  second half of the GGUF, the stripped e2llm binary, the gguf wheel, model shapes, manifest
#   stage4  the adapter training data (data/train: train.db, train_qa.jsonl)
# Then bench/gpu/device.sh (CPU vs CUDA bench) and bench/gpu/train.sh (adapter training) run there.
# Run from the repository root after `make setup` and `make train-data`.
set -euo pipefail
ORT=1.31.1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
rm -rf .gpu && mkdir -p .gpu/stage1 .gpu/stage2 .gpu/stage3/models .gpu/stage4
grep -qx '/.gpu/' .git/info/exclude || echo '/.gpu/' >> .git/info/exclude
.venv/bin/python -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 -d "$work" "onnxruntime-gpu==$ORT"
(cd "$work" && unzip -q -o onnxruntime_gpu-*.whl 'onnxruntime/capi/libonnxruntime*')
capi=$work/onnxruntime/capi
python3 bench/gpu/keep_arch.py "$capi/libonnxruntime_providers_cuda.so" "$work/prov_sm90.so" --arch 90
xz -9e -T2 -c "$work/prov_sm90.so" > .gpu/stage1/prov_sm90.so.xz
gguf=$(PYTHONPATH=onnx .venv/bin/python -c 'from e2llm_offline.common import default_decoder_gguf; print(default_decoder_gguf())')
split -n 2 -d "$gguf" "$work/gguf.part"
mv "$work/gguf.part00" .gpu/stage2/ && mv "$work/gguf.part01" .gpu/stage3/
sha256sum "$gguf" | cut -d' ' -f1 > .gpu/stage3/gguf.sha256
xz -9 -T2 -c "$capi/libonnxruntime.so.$ORT" > .gpu/stage2/libort.so.xz
cp "$capi/libonnxruntime_providers_shared.so" .gpu/stage2/
strip -o "$work/e2llm" target/release/e2llm
xz -9 -T2 -c "$work/e2llm" > .gpu/stage3/e2llm.xz
.venv/bin/python -m pip download -q --no-deps -d .gpu/stage3 gguf==0.19.0
PYTHONPATH=onnx .venv/bin/python bench/gpu/shaped_random.py like --out .gpu/stage3/like
cp models/default/manifest.json models/default/decoder_tokenizer.json .gpu/stage3/models/
sqlite3 data/train/train.db 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
tar -C data/train -cJf .gpu/stage4/train.tar.xz train.db train_qa.jsonl
du -sh .gpu/stage*
