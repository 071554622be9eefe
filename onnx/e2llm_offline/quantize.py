"""Quantised variants of exported graphs for the CPU (``encoder.quantized.onnx``, ``decoder.quantized.onnx``).

The float32 graphs stay the reference; each variant has the same inputs and outputs and is recorded in the
manifest as ``quantized_file``. ``make setup`` writes both (``export --quantize``); the runtime loads them
for ``--precision quantized`` and for ``auto`` on the CPU (reports/quantized.md has the measurements).

- **encoder** (8-bit weights, about 1.3x fp32 on 2 cores): every weight MatMul becomes ``MatMulNBits`` with
  symmetric 8-bit blocks of 128 and int8 compute (accuracy level 4), which quantises each row's
  activations per block. A vector therefore depends on its chunk alone, never on the other chunks of its
  batch (batch-invariant like the float32 graph), and stays within cosine 0.998 of the float32 vector
  (reports/quantized.md), so its vectors are *interchangeable* with the float32 graph's: they keep the
  encoder's fingerprint and a database may mix them. ONNX Runtime's dynamic int8 quantisation is faster
  (1.4-1.7x) but scales activations per call: in a batch beside other chunks a vector moved to cosine
  0.982 of the same chunk in another batch, so the same document compressed on two machines got
  different vectors.
- **decoder** (8-bit weights): every weight MatMul, the tied LM head included, becomes ``MatMulNBits``
  with symmetric 8-bit blocks of 32 (like GGUF's Q8_0) and int8 compute (accuracy level 4). The KV cache
  and its interface are unchanged. 4-bit blocks (``--decoder-bits 4``, like the source GGUF's Q4_1) are
  smaller and faster but, re-quantising the dequantised and LoRA-merged weights by rounding, follow the
  float32 decoder's next token only 61% of the time (8-bit: 96%; bench/decoder_fidelity.py), so 8 bits
  are the default.

    PYTHONPATH=onnx .venv/bin/python -m e2llm_offline.quantize --models models/default [--parts encoder decoder]
        [--decoder-bits 8|4]

adds the variants to an existing export (``make setup`` writes them during the export).
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import onnx

from .common import record_variants, save_onnx, variant_file

PARTS = ("encoder", "decoder")
BLOCK = 32  # decoder weights per quantisation block: the GGUF Q4_1 / Q8_0 block size
ENCODER_BLOCK = 128  # measured: 1.33x fp32 at min cosine 0.998 (blocks of 32: 1.15x, 0.9993)
ACCURACY_LEVEL = 4  # MatMulNBits computes with int8 activations quantised per block
DECODER_BITS = 8  # measured: 4-bit rounding loses too much (module docstring)


def _weight_matmuls(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    initializers = {t.name for t in model.graph.initializer}
    return [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in initializers]


def _blockwise(model: onnx.ModelProto, bits: int, symmetric: bool, block: int = BLOCK) -> onnx.ModelProto:
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    logging.getLogger("onnxruntime.quantization").setLevel(logging.WARNING)  # a line per node otherwise

    config = DefaultWeightOnlyQuantConfig(block_size=block, is_symmetric=symmetric, accuracy_level=ACCURACY_LEVEL,
                                          bits=bits)
    quantizer = MatMulNBitsQuantizer(model, bits=bits, block_size=block, is_symmetric=symmetric,
                                     accuracy_level=ACCURACY_LEVEL, algo_config=config)
    quantizer.process()
    return quantizer.model.model


def quantize_encoder(model: onnx.ModelProto) -> onnx.ModelProto:
    """The encoder's 8-bit variant (see the module's docstring)."""
    if not _weight_matmuls(model):
        raise ValueError("the encoder graph has no weight MatMul to quantise")
    return _blockwise(model, bits=8, symmetric=True, block=ENCODER_BLOCK)


def quantize_decoder(model: onnx.ModelProto, bits: int = DECODER_BITS) -> onnx.ModelProto:
    """The decoder's weight-only variant, 8-bit symmetric or 4-bit asymmetric blocks (see the module's
    docstring)."""
    if not _weight_matmuls(model):
        raise ValueError("the decoder graph has no weight MatMul to quantise")
    if bits not in (4, 8):
        raise ValueError(f"decoder bits must be 4 or 8, not {bits}")
    return _blockwise(model, bits=bits, symmetric=bits == 8)


def write_variant(part: str, source: Path, progress=print, decoder_bits: int = DECODER_BITS) -> list[Path]:
    """Quantises the graph at ``source`` as ``part`` and writes its variant beside it; the files written."""
    started = time.monotonic()
    progress(f"quantising {source.name}")
    model = onnx.load(source)
    model = quantize_encoder(model) if part == "encoder" else quantize_decoder(model, decoder_bits)
    # Weights in a side file: ONNX Runtime maps it instead of copying the weights out of a parsed
    # protobuf, which kept ~50 MiB more at the peak of loading the decoder (`ask` 445 vs 389 MiB).
    files = save_onnx(model, source.parent / variant_file(source.name, "quantized"), external_data=True)
    megabytes = sum(f.stat().st_size for f in files) / 1e6
    progress(f"{files[0].name}: {megabytes:.1f} MB in {time.monotonic() - started:.1f}s")
    return files


def add_variants(models_dir: Path, parts: Sequence[str] = PARTS, progress=print,
                 decoder_bits: int = DECODER_BITS) -> dict:
    """Writes the quantised variants of ``parts`` beside an export and records them (``quantized_file``,
    sha256 in ``files``) in its manifest.json, rewritten atomically. Returns the new manifest."""
    def write(part: str, source: Path) -> list[Path]:
        return write_variant(part, source, progress, decoder_bits)

    return record_variants(models_dir, parts, "quantized_file", write, "quantised", progress)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2llm_offline.quantize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, required=True, help="an exported models directory")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS), help="which graphs (default: both)")
    parser.add_argument("--decoder-bits", type=int, choices=(4, 8), default=DECODER_BITS,
                        help="decoder weight bits (default 8; 4 is smaller but measurably less faithful)")
    args = parser.parse_args(argv)
    add_variants(args.models, args.parts, decoder_bits=args.decoder_bits)
    return 0


if __name__ == "__main__":
    sys.exit(main())
