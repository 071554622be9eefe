"""Quantised variants of exported graphs for the CPU (``encoder.quantized.onnx``, ``decoder.quantized.onnx``).

The float32 graphs stay the reference; each variant has the same inputs and outputs and is recorded in the
manifest as ``quantized_file``. Not loaded by the Rust runtime yet: the plan is ``--precision quantized``,
and ``auto`` on the CPU once the benchmarks back it (reports/quantized.md).

- **encoder** (8-bit, about 2x fp32 on 2 cores): every weight MatMul but the feed-forward output gets int8
  weights per output channel and int8 activations quantised per call (ONNX Runtime's dynamic
  quantisation); the feed-forward output (``*.ffn_out``, whose GELU inputs have outlier channels that a
  per-tensor activation scale flattens) gets 8-bit weights in blocks of 32 with int8 activations per
  block (``MatMulNBits``, accuracy level 4). Measured on 1,000 chunks of the project's own text: minimum
  cosine to the float32 vectors 0.993 (all-dynamic: 0.987), so its vectors are *interchangeable* with the
  float32 graph's: they keep the encoder's fingerprint and a database may mix them (reports/quantized.md).
- **decoder** (4-bit weights, as in the source GGUF's Q4_1): every weight MatMul, the tied LM head
  included, becomes ``MatMulNBits`` with 4-bit asymmetric blocks of 32 (a scale and a zero point per
  block, like Q4_1) and int8 compute (accuracy level 4). The KV cache and its interface are unchanged.

    PYTHONPATH=onnx .venv/bin/python -m e2llm_offline.quantize --models models/default [--parts encoder decoder]

adds the variants to an existing export (``make setup`` does not build them yet).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import onnx

from .common import record_variants, save_onnx

PARTS = ("encoder", "decoder")
BLOCK = 32  # weights per quantisation block: the GGUF Q4_1 / Q8_0 block size
ACCURACY_LEVEL = 4  # MatMulNBits computes with int8 activations quantised per block
ENCODER_BLOCKWISE = (".ffn_out",)  # encoder MatMuls that get 8-bit blocks instead of dynamic int8


def variant_name(file_name: str) -> str:
    """``encoder.onnx`` -> ``encoder.quantized.onnx`` (the Rust side names it the same way)."""
    return f"{file_name.removesuffix('.onnx')}.quantized.onnx"


def _weight_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    initializers = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in initializers]


def _blockwise(model: onnx.ModelProto, bits: int, symmetric: bool, exclude: Sequence[str]) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(block_size=BLOCK, is_symmetric=symmetric, accuracy_level=ACCURACY_LEVEL,
                                          bits=bits)
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=BLOCK, is_symmetric=symmetric,
                                     accuracy_level=ACCURACY_LEVEL, nodes_to_exclude=list(exclude),
                                     algo_config=config)
    quantizer.process()
    return quantizer.model.model


def quantize_encoder(model: onnx.ModelProto) -> onnx.ModelProto:
    """The encoder's 8-bit variant (see the module's docstring)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    matmuls = _weight_matmuls(model)
    dynamic = [n.name for n in matmuls if not n.name.endswith(ENCODER_BLOCKWISE)]
    if len(dynamic) == len(matmuls):
        raise ValueError(f"no encoder MatMul named *{ENCODER_BLOCKWISE[0]}: not a graph of graph.py's encoder")
    staged = _blockwise(model, bits=8, symmetric=True, exclude=dynamic)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "staged.onnx", Path(tmp) / "quantized.onnx"
        onnx.save(staged, source)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, per_channel=True, nodes_to_quantize=dynamic,
                         extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT})
        return onnx.load(target)


def quantize_decoder(model: onnx.ModelProto) -> onnx.ModelProto:
    """The decoder's 4-bit weight-only variant (see the module's docstring)."""
    if not _weight_matmuls(model):
        raise ValueError("the decoder graph has no weight MatMul to quantise")
    return _blockwise(model, bits=4, symmetric=False, exclude=())


QUANTIZERS = {"encoder": quantize_encoder, "decoder": quantize_decoder}


def write_variant(part: str, source: Path, progress=print) -> list[Path]:
    """Quantises the graph at ``source`` as ``part`` and writes its variant beside it; the files written."""
    progress(f"quantising {source.name}")
    model = QUANTIZERS[part](onnx.load(source))
    return save_onnx(model, source.parent / variant_name(source.name))


def add_variants(models_dir: Path, parts: Sequence[str] = PARTS, progress=print) -> dict:
    """Writes the quantised variants of ``parts`` beside an export and records them (``quantized_file``,
    sha256 in ``files``) in its manifest.json, rewritten atomically. Returns the new manifest."""
    def write(part: str, source: Path) -> list[Path]:
        return write_variant(part, source, progress)

    return record_variants(models_dir, parts, "quantized_file", write, "quantised", progress)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2llm_offline.quantize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="an exported models directory")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which graphs (default: both)")
    args = parser.parse_args(argv)
    add_variants(args.models, args.parts)
    return 0


if __name__ == "__main__":
    sys.exit(main())
