#!/usr/bin/env bash
# Runs on the GPU machine after the staging calls (bench/gpu/README.md): trains the adapter there
# with onnx/train_configs/gpu.json; the weights, loss curve and log land in $OUT.
set -euo pipefail
S=/tmp/stage
cat "$S/gguf.part00" "$S/gguf.part01" > "$S/decoder.gguf"
echo "$(cat "$S/gguf.sha256")  $S/decoder.gguf" | sha256sum -c -
python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "$S"/*.whl
export PYTHONPATH=/tmp/site:$PWD/onnx PYTHONUNBUFFERED=1
mkdir -p /tmp/train
python3 -c 'import sys, tarfile; tarfile.open(sys.argv[1], "r:xz").extractall(sys.argv[2])' .gpu/stage4/train.tar.xz /tmp/train
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
python3 -m e2llm_offline.train --config onnx/train_configs/gpu.json --models "$S/models" --gguf "$S/decoder.gguf" \
    --data /tmp/train --out "$OUT" --minutes "${MINUTES:-4}" 2>&1 | tee "$OUT/train.log"
