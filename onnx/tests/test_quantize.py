"""The quantised CPU variants (quantize.py): same interfaces as the float32 graphs, close to them, and
written, dropped and recorded by the export and the CLI like the float16 variants."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from tokenizers import Tokenizer

from e2llm_offline.decoder import build_decoder, build_embed, load_hf
from e2llm_offline.export import GOLDEN_SENTENCES
from e2llm_offline.export import main as export_main
from e2llm_offline.quantize import main as quantize_main
from e2llm_offline.common import variant_file
from e2llm_offline.quantize import quantize_decoder, quantize_encoder
from helpers import empty_cache, pad_batch, run_decoder, session_from_model
from tiny import write_hf_checkpoint


def _interface(model: onnx.ModelProto) -> list[tuple[str, int]]:
    return [(v.name, v.type.tensor_type.elem_type) for v in [*model.graph.input, *model.graph.output]]


def test_variant_name() -> None:
    assert variant_file("encoder.onnx", "quantized") == "encoder.quantized.onnx"
    assert variant_file("decoder.onnx", "quantized") == "decoder.quantized.onnx"
    with pytest.raises(ValueError, match="unknown variant"):
        variant_file("encoder.onnx", "int4")


@pytest.mark.parametrize("bits", [8, 4])
def test_tiny_decoder_keeps_its_interface_and_follows_float32(tmp_path: Path, bits: int) -> None:
    write_hf_checkpoint(tmp_path / "tiny", "llama")
    ckpt = load_hf(tmp_path / "tiny")
    c = ckpt.config
    model = build_decoder(ckpt)
    reference = session_from_model(model)
    quantized = quantize_decoder(build_decoder(ckpt), bits)
    assert _interface(quantized) == _interface(model)
    weights = {t.name for t in model.graph.initializer}
    weight_matmuls = [n for n in model.graph.node if n.op_type == "MatMul" and n.input[1] in weights]
    ops = Counter(n.op_type for n in quantized.graph.node)
    assert ops["MatMulNBits"] == len(weight_matmuls) > c.layers  # every weight MatMul, the LM head included
    fast = session_from_model(quantized)
    (embeds,) = session_from_model(build_embed(ckpt)).run(None, {"input_ids": np.array([[5, 9, 40, 7, 3]])})
    args = (embeds, np.ones((1, 5)), np.arange(5)[None], empty_cache(c.layers, 1, c.kv_heads, c.head_dim))
    logits, cache = run_decoder(reference, *args)
    got, got_cache = run_decoder(fast, *args)
    tolerance = {8: 0.05, 4: 0.3}[bits] * np.abs(logits).max()
    assert np.abs(got - logits).max() < tolerance
    step = (embeds[:, :1], np.ones((1, 6)), np.array([[5]]))
    np.testing.assert_allclose(run_decoder(fast, *step, got_cache)[0], run_decoder(reference, *step, cache)[0],
                               atol=tolerance)


def test_decoder_bits_are_checked(tmp_path: Path) -> None:
    write_hf_checkpoint(tmp_path / "tiny", "llama")
    with pytest.raises(ValueError, match="4 or 8"):
        quantize_decoder(build_decoder(load_hf(tmp_path / "tiny")), 3)


def test_encoder_vectors_close_to_float32(models_dir: Path) -> None:
    model = onnx.load(str(models_dir / "encoder.onnx"))
    quantized = quantize_encoder(onnx.load(str(models_dir / "encoder.onnx")))
    assert _interface(quantized) == _interface(model)
    ops = Counter(n.op_type for n in quantized.graph.node)
    assert ops["MatMulNBits"] == sum(1 for n in model.graph.node if n.op_type == "MatMul" and
                                     n.input[1] in {t.name for t in model.graph.initializer}), ops
    tokenizer = Tokenizer.from_file(str(models_dir / "encoder_tokenizer.json"))
    reference, fast = session_from_model(model), session_from_model(quantized)

    def embed(session, rows: list[list[int]]) -> np.ndarray:
        ids, mask = pad_batch(rows)
        return session.run(None, {"input_ids": ids, "attention_mask": mask})[0]

    def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)

    rows = [tokenizer.encode(t).ids for t in GOLDEN_SENTENCES]
    a = embed(reference, rows)
    alone = np.concatenate([embed(fast, [row]) for row in rows])  # how `ask` embeds a question
    together = embed(fast, rows)  # one batch of very different lengths
    print(f"\nencoder quantised vs fp32, smallest cosine over {len(rows)} sentences: alone "
          f"{cosine(a, alone).min():.4f}, in one padded batch {cosine(a, together).min():.4f}; "
          f"alone vs batched {cosine(alone, together).min():.5f}")
    assert cosine(a, alone).min() >= 0.99 and cosine(a, together).min() >= 0.99
    # Activations are quantised per row and block, so neighbours do not move a vector; only the kernel's
    # row tiling does, a little (dynamic int8, scaled per call, moved vectors to cosine 0.98).
    assert cosine(alone, together).min() >= 0.998


def test_export_writes_them_by_default_and_the_cli_adds_them(tmp_path: Path, encoder_dir: Path) -> None:
    source = tmp_path / "tiny-llama"
    write_hf_checkpoint(source, "llama")
    out = tmp_path / "models" / "tiny"
    absent = tmp_path / "absent.safetensors"
    assert export_main(["--out", str(out), "--decoder-hf", str(source), "--encoder-dir", str(encoder_dir),
                        "--adapter", str(absent), "--no-golden"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encoder"]["quantized_file"] == "encoder.quantized.onnx"
    assert manifest["decoder"]["quantized_file"] == "decoder.quantized.onnx"
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    # --quantize alone writes none and removes the old ones; the CLI adds one part to an export.
    assert export_main(["--out", str(out), "--decoder-hf", str(source), "--encoder-dir", str(encoder_dir),
                        "--adapter", str(absent), "--no-golden", "--quantize"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "quantized_file" not in manifest["decoder"] and not (out / "decoder.quantized.onnx").exists()
    assert quantize_main(["--models", str(out), "--parts", "decoder", "--decoder-bits", "4"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "quantized_file" not in manifest["encoder"] and manifest["decoder"]["quantized_file"] in manifest["files"]
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
