"""The float16 variants (fp16.py): float32 interfaces, the builder's float32 regions, clamping, and
parity with the float32 graphs on ONNX Runtime's CPU provider.

On the CPU provider ONNX Runtime runs the float16 nodes it has no CPU kernel for in float32 (it inserts
Casts), so these parity numbers measure mostly the rounding of weights to float16; the float16
arithmetic itself is measured on CUDA by bench/gpu.py (reports/gpu_fp16.md).
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, numpy_helper
from tokenizers import Tokenizer

from e2llm_offline.common import variant_file
from e2llm_offline.decoder import build_decoder, build_embed, load_gguf, load_hf, load_lora, with_lora
from e2llm_offline.export import GOLDEN_SENTENCES, export
from e2llm_offline.export import main as export_main
from e2llm_offline.fp16 import FP16_MAX, add_variants, float32_nodes, main as fp16_main, to_fp16
from e2llm_offline.graph import FLOAT, GraphBuilder, check
from helpers import empty_cache, pad_batch, run_decoder, session_from_model
from tiny import write_hf_checkpoint

PROJECT = Path(__file__).resolve().parents[2]


def _types(values) -> dict[str, int]:
    return {v.name: v.type.tensor_type.elem_type for v in values}


def _toy() -> onnx.ModelProto:
    """float input -> MatMul (float16) -> float32 region (Pow, ReduceMean) -> Mul by a shared constant;
    a second output that a later node also reads (like the decoder's present.*), and a Cast to float."""
    g = GraphBuilder("toy")
    x = g.input("x", FLOAT, ["n", 4])
    flags = g.input("flags", TensorProto.INT64, ["n", 4])
    h = g.named_op("MatMul", [x, g.weight(np.eye(4, dtype=np.float32) * 2, "w")], "hidden")
    with g.float32():
        mean = g.op("ReduceMean", [g.op("Pow", [h, g.const(2.0, np.float32)], "sq")], "mean", axes=[-1], keepdims=1)
        scaled = g.op("Mul", [mean, g.const(0.5, np.float32)], "scaled")
    flags_f = g.op("Cast", [flags], "flags_f", to=FLOAT)
    masked = g.op("Add", [g.op("Mul", [h, flags_f], "kept"), g.const(-1e30, np.float32)], "masked")
    out = g.named_op("Mul", [g.op("Add", [h, scaled], "sum"), g.const(0.5, np.float32)], "out")
    g.output(out, "out", FLOAT, ["n", 4])
    g.output(h, "hidden", FLOAT, ["n", 4])
    g.output(masked, "masked", FLOAT, ["n", 4])
    return g.model()


def test_interfaces_stay_float32_and_marked_nodes_float32() -> None:
    model = _toy()
    half, conversion = to_fp16(model)
    onnx.checker.check_model(half, full_check=True)  # strict type inference: every Cast is where it must be
    assert _types(half.graph.input) == _types(model.graph.input)
    assert _types(half.graph.output) == _types(model.graph.output)
    kept = float32_nodes(model)
    assert len(kept) == 3 and float32_nodes(half) == kept
    inits = {t.name: t.data_type for t in half.graph.initializer}
    assert inits["w_fp16"] == TensorProto.FLOAT16 and "w" not in inits
    # The constant 0.5 is read by a float32 node and a float16 one: both copies exist.
    assert sum(1 for t in half.graph.initializer if numpy_helper.to_array(t).tolist() == 0.5) == 2
    cast_to = {n.output[0]: n.attribute[0].i for n in half.graph.node if n.op_type == "Cast"}
    assert cast_to["flags_f"] == TensorProto.FLOAT16
    assert cast_to["out"] == cast_to["hidden"] == TensorProto.FLOAT
    assert conversion.clamped == 1 and conversion.float32_nodes == 3

    x = np.array([[1.0, -2.0, 3.0, 0.25]], np.float32)
    feeds = {"x": x, "flags": np.array([[1, 0, 1, 1]], np.int64)}
    expected = dict(zip(["out", "hidden", "masked"], session_from_model(model).run(None, feeds)))
    got = dict(zip(["out", "hidden", "masked"], session_from_model(half).run(None, feeds)))
    for name in expected:
        assert got[name].dtype == np.float32
    np.testing.assert_allclose(got["out"], expected["out"], rtol=1e-3)
    np.testing.assert_array_equal(got["hidden"], expected["hidden"])
    assert got["masked"][0, 1] == -FP16_MAX  # -1e30 clamped to float16's lowest, not -inf (0 · -inf = NaN)


def test_unmarked_graphs_convert_whole() -> None:
    model = _toy()
    del model.metadata_props[:]
    half, conversion = to_fp16(model)
    assert conversion.float32_nodes == 0 and not float32_nodes(half)
    check(half)


def test_variant_name() -> None:
    assert variant_file("encoder.onnx", "fp16") == "encoder.fp16.onnx"
    assert variant_file("decoder.onnx", "fp16") == "decoder.fp16.onnx"


def test_tiny_decoder_logits_and_cache(tmp_path: Path) -> None:
    write_hf_checkpoint(tmp_path / "tiny", "qwen2")
    ckpt = load_hf(tmp_path / "tiny")
    c = ckpt.config
    model = build_decoder(ckpt)
    assert len(float32_nodes(model)) == 5 * (2 * c.layers + 1)  # Pow, ReduceMean, Add, Sqrt, Div per RMS norm
    half, _ = to_fp16(model)
    check(half)
    full, fast = session_from_model(model), session_from_model(half)
    (embeds,) = session_from_model(build_embed(ckpt)).run(None, {"input_ids": np.array([[5, 9, 40, 7, 3]])})
    args = (embeds, np.ones((1, 5)), np.arange(5)[None], empty_cache(c.layers, 1, c.kv_heads, c.head_dim))
    logits, cache = run_decoder(full, *args)
    logits_16, cache_16 = run_decoder(fast, *args)
    assert logits_16.dtype == np.float32 and all(k.dtype == np.float32 for k in cache_16)
    assert np.abs(logits_16 - logits).max() < 0.05 * np.abs(logits).max()
    assert int(logits_16.argmax()) == int(logits.argmax())
    # A cached step on the float16 variant's own cache.
    step = (embeds[:, :1], np.ones((1, 6)), np.array([[5]]))
    np.testing.assert_allclose(run_decoder(fast, *step, cache_16)[0], run_decoder(full, *step, cache)[0],
                               atol=0.05 * np.abs(logits).max())


def test_encoder_vectors_close_to_float32(models_dir: Path) -> None:
    model = onnx.load(str(models_dir / "encoder.onnx"))
    if not float32_nodes(model):
        pytest.fail(f"{models_dir}/encoder.onnx predates the float32 markers: re-run `make setup`")
    half, conversion = to_fp16(model)
    assert conversion.float32_nodes == 9  # the pooling and L2 normalisation
    tokenizer = Tokenizer.from_file(str(models_dir / "encoder_tokenizer.json"))
    ids, mask = pad_batch([tokenizer.encode(t).ids for t in GOLDEN_SENTENCES])
    feeds = {"input_ids": ids, "attention_mask": mask}
    (a,) = session_from_model(model).run(None, feeds)
    (b,) = session_from_model(half).run(None, feeds)
    cosine = (a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)
    print(f"\nencoder fp16 vs fp32 on CPU: smallest cosine {cosine.min():.7f}, largest difference "
          f"{np.abs(a - b).max():.2e}")
    assert cosine.min() >= 0.999


def test_export_flag_and_cli_record_the_variants(tmp_path: Path, encoder_dir: Path) -> None:
    source = tmp_path / "tiny-llama"
    write_hf_checkpoint(source, "llama")
    out = tmp_path / "models" / "tiny"
    absent = tmp_path / "absent.safetensors"
    assert export_main(["--out", str(out), "--decoder-hf", str(source), "--encoder-dir", str(encoder_dir),
                        "--adapter", str(absent), "--no-golden", "--fp16"]) == 0  # the flag alone: both
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["encoder"]["fp16_file"] == "encoder.fp16.onnx"
    assert manifest["decoder"]["fp16_file"] == "decoder.fp16.onnx"
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    half = onnx.load(str(out / "decoder.fp16.onnx"))
    assert Counter(t.data_type for t in half.graph.initializer)[TensorProto.FLOAT16] > 0
    # A re-export without --fp16 drops them; the CLI adds them to an existing export.
    manifest = export(out, None, source, encoder_dir, absent, Path(__file__).parents[1] / "prompt.json",
                      golden=False)
    assert "fp16_file" not in manifest["encoder"] and not (out / "encoder.fp16.onnx").exists()
    assert fp16_main(["--models", str(out), "--parts", "decoder"]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert "fp16_file" not in manifest["encoder"] and manifest["decoder"]["fp16_file"] == "decoder.fp16.onnx"
    assert "decoder.fp16.onnx" in manifest["files"]
    add_variants(out, ["encoder"], progress=lambda _: None)
    assert json.loads((out / "manifest.json").read_text())["encoder"]["fp16_file"] == "encoder.fp16.onnx"


def test_real_decoder_in_float16_arithmetic_needs_its_float32_norms(models_dir: Path, golden: dict,
                                                                   decoder_gguf: Path, manifest: dict) -> None:
    """The real decoder's variant evaluated by onnx's NumPy reference evaluator, which computes float16
    nodes in float16 (unlike ONNX Runtime's CPU provider): with the RMS norms' float32 nodes it keeps
    float32's top 5 logits on a chat prompt; converted whole, x² overflows (SmolLM2's residual stream
    reaches ~25,000) and the argmax is lost. The evaluator has no GroupQueryAttention: this is the real
    weights in the explicit-attention graph, whose norms are the same nodes."""
    from onnx.reference import ReferenceEvaluator

    ckpt = load_gguf(decoder_gguf)
    if manifest["decoder"].get("lora"):
        ckpt = with_lora(ckpt, load_lora(PROJECT / "onnx" / "adapter" / manifest["decoder"]["lora"]["file"])[0])
    model = build_decoder(ckpt, gqa=False)
    ids = golden["decoder"][1]["prompt_ids"]  # the bare chat turn, 16 tokens
    (embeds,) = session_from_model(onnx.load(str(models_dir / "embed.onnx"))).run(None, {"input_ids": np.array([ids])})
    layers = sum(1 for i in model.graph.input if i.name.endswith(".key"))
    feeds = {"inputs_embeds": embeds, "attention_mask": np.ones((1, len(ids)), np.int64),
             "position_ids": np.arange(len(ids))[None]}
    for i, cache in enumerate(empty_cache(layers, 1, 3, 64)):
        feeds[f"past_key_values.{i // 2}.{'key' if i % 2 == 0 else 'value'}"] = cache
    (expected,) = session_from_model(model).run(["logits"], feeds)
    top5 = set(np.argsort(expected[0])[-5:])
    half, _ = to_fp16(model)
    with np.errstate(over="ignore", invalid="ignore"):
        (logits,) = ReferenceEvaluator(half).run(["logits"], feeds)
        assert set(np.argsort(logits[0])[-5:]) == top5
        assert np.abs(logits - expected).max() < 0.5
        del model.metadata_props[:]
        whole, _ = to_fp16(model)
        (broken,) = ReferenceEvaluator(whole).run(["logits"], feeds)
    assert int(broken[0].argmax()) != int(expected[0].argmax())
