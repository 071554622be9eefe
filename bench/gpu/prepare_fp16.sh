#!/usr/bin/env bash
# Packs .gpu/stage5 for the float32-vs-float16 bench (bench/gpu/README.md): what bench/gpu/device.sh
# needs besides the CUDA provider (stage1), in one device call (64 MiB with the working tree):
#   ONNX Runtime (from stage2), the e2llm binary built now, the gguf wheel and the model shapes (from
#   stage3), and real/: the real encoder's float16 variant (xz) with the float32 vectors of the parity
#   texts computed here on CPU (expected.json), so the device also measures real-weight fp16 parity.
# Run from the repository root after `make setup` and bench/gpu/prepare.sh (for stage1-3).
set -euo pipefail
for part in .gpu/stage1/prov_sm90.so.xz .gpu/stage2/libort.so.xz .gpu/stage3/like; do
    test -e "$part" || { echo "missing $part: run bench/gpu/prepare.sh first" >&2; exit 1; }
done
rm -rf .gpu/stage5 && mkdir -p .gpu/stage5/real
cp .gpu/stage2/libort.so.xz .gpu/stage2/libonnxruntime_providers_shared.so .gpu/stage3/gguf-*.whl .gpu/stage5/
cp -r .gpu/stage3/like .gpu/stage5/
strip -o .gpu/stage5/e2llm target/release/e2llm
xz -9 -T2 .gpu/stage5/e2llm
PYTHONPATH=onnx:bench .venv/bin/python - <<'PY'
import hashlib, json, os
from pathlib import Path
import onnx
import bench, gpu
from e2llm_offline.fp16 import write_variant

real = Path(".gpu/stage5/real")
write_variant(onnx.load(str(bench.MODELS / "encoder.onnx")), real / "encoder.fp16.onnx")
texts = gpu.parity_texts([text for _, text in gpu.corpus(bench.ROOT / "examples" / "sotu", 1)])
gpu.settings("cpu", "fp32")
vectors = gpu.embed(texts)
sha = hashlib.sha256((real / "encoder.fp16.onnx").read_bytes()).hexdigest()
(real / "expected.json").write_text(json.dumps({
    "texts": texts, "vectors": vectors.tolist(), "sha256": sha,
    "reference": "the float32 encoder.onnx on CPU (e2llm embed --device cpu --precision fp32)"}))
PY
xz -6 -T2 .gpu/stage5/real/encoder.fp16.onnx
du -sh .gpu/stage5
