#!/usr/bin/env bash
# Runs on the GPU machine (see bench/gpu/README.md): unpacks onnxruntime-gpu's libraries and the e2llm
# binary carried in .gpu/, writes random-weight models with the default models' shapes, checks that
# CUDA is used, then runs bench/gpu.py (CPU vs CUDA) with its report in $OUT.
# PRECISIONS="fp32 fp16" exports the float16 variants too and compares the precisions on CUDA instead
# (gpu_fp16.md; with the real encoder's float16 variant when the staging carried real/).
set -euo pipefail
S=/tmp/stage   # filled by the staging calls: cp -r .gpu/stageN/. /tmp/stage/
mkdir -p "$S/ort" "$OUT"
unxz() { python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' "$1" "$2"; }
# (a staging call may have unpacked the provider already)
test -s "$S/ort/libonnxruntime_providers_cuda.so" || unxz "$S/prov_sm90.so.xz" "$S/ort/libonnxruntime_providers_cuda.so"
unxz "$S/libort.so.xz" "$S/ort/libonnxruntime.so.1.31.1"
unxz "$S/e2llm.xz" "$S/e2llm"
chmod +x "$S/e2llm"
ln -sf libonnxruntime.so.1.31.1 "$S/ort/libonnxruntime.so"
cp "$S/libonnxruntime_providers_shared.so" "$S/ort/"
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$S"/*.whl
export PYTHONPATH=/tmp/site:$PWD/onnx:$PWD/bench
# CUDA 13 libraries (cuBLAS, cuDNN, cuRAND, runtime) from the PyTorch install's nvidia packages.
NV=$(python3 -c 'import glob, os, nvidia; print(":".join(sorted({os.path.dirname(p) for r in nvidia.__path__ for p in glob.glob(r + "/**/lib/*.so*", recursive=True)})))')
export LD_LIBRARY_PATH=$S/ort:$NV:${LD_LIBRARY_PATH:-}
export ORT_DYLIB_PATH=$S/ort/libonnxruntime.so E2LLM_BIN=$S/e2llm E2LLM_MODELS=/tmp/models/gpu
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
python3 bench/gpu/shaped_random.py random --like "$S/like" --out /tmp/ckpt
python3 -m e2llm_offline.export --out /tmp/models/gpu --encoder-dir /tmp/ckpt/encoder \
    --decoder-hf /tmp/ckpt/decoder --adapter /tmp/ckpt/adapter.safetensors --no-golden ${PRECISIONS:+--fp16} 2>&1 | tail -5
echo "== CUDA smoke test"
E2LLM_DEVICE=cuda "$S/e2llm" embed "hello world" > /tmp/embed.txt
cut -c1-100 /tmp/embed.txt
E2LLM_DEVICE=auto "$S/e2llm" info --json > "$OUT/info.json" || true
grep -E -A4 '"(device|provider|precision)"' "$OUT/info.json" || true
echo "== bench"
WEIGHTS="random, with the exact shapes of the default models (all-MiniLM-L6-v2 encoder, SmolLM2-135M decoder, the adapter); see bench/gpu/README.md"
if [ -n "${PRECISIONS:-}" ]; then
    real=()
    if [ -f "$S/real/encoder.fp16.onnx.xz" ]; then
        unxz "$S/real/encoder.fp16.onnx.xz" "$S/real/encoder.fp16.onnx"
        real=(--real-encoder "$S/real")
    fi
    # shellcheck disable=SC2086  # PRECISIONS and BATCHES are lists
    PYTHONUNBUFFERED=1 timeout "${BENCH_SECONDS:-420}" python3 bench/gpu.py --out "$OUT" --devices cuda \
        --precisions $PRECISIONS --cuda-batches ${BATCHES:-64 256} --copies "${COPIES:-8}" --runs "${RUNS:-3}" \
        "${real[@]}" --weights "$WEIGHTS"
else
    PYTHONUNBUFFERED=1 python3 bench/gpu.py --out "$OUT" --copies "${COPIES:-8}" --runs "${RUNS:-3}" --weights "$WEIGHTS"
fi
