"""The loaders on tiny checkpoints the tests write themselves: Hugging Face llama (bfloat16, untied
lm_head, explicit head_dim, llama3 rope scaling) and qwen2 (q/k/v biases, tied, sharded), and a
llama.cpp-style GGUF with permuted Q/K rows. Each exported graph must match the NumPy reference."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from e2llm_offline.common import save_onnx, sha256_file
from e2llm_offline.decoder import (DecoderCheckpoint, DecoderConfig, build_decoder, build_embed, int8_blocks,
                                   load_gguf, load_hf, permute_rotary_rows, unpermute_rotary_rows)
from e2llm_offline.export import main as export_main
from e2llm_offline.reference import ReferenceDecoder
from e2llm_offline.tokenizer import tokenizer_from_gguf
from helpers import empty_cache, run_decoder, session, session_from_model
from tiny import llama_cpp_permute, tiny_tokenizer, write_gguf, write_hf_checkpoint

PROMPTS = ["<|im_start|>user\nthe cat sat on the mat<|im_end|>\n<|im_start|>assistant\n",
           "at 12 the rest"]


def _relative_tolerance(logits: np.ndarray) -> float:
    # float32 graph vs float64 reference on a 2-layer model: ~1e-6 relative; allow 1e-4 of the scale.
    return 1e-4 * max(1.0, float(np.abs(logits).max()))


def assert_parity(ckpt: DecoderCheckpoint, reference: ReferenceDecoder, steps: int = 3) -> float:
    """Both decoder graphs against the reference: the explicit-attention one (the RCC encoder's) on a
    left-padded batch of two prompts, the GroupQueryAttention one (decoder.onnx, which takes no padding)
    on each prompt alone; prefill, then cached steps; logits within tolerance. Returns the worst error."""
    tokenizer = tiny_tokenizer()
    rows = [tokenizer.encode(p, add_special_tokens=False).ids for p in PROMPTS]
    worst = _parity(ckpt, reference, build_decoder(ckpt, gqa=False), rows, steps)
    gqa = build_decoder(ckpt)
    for row in rows:
        worst = max(worst, _parity(ckpt, reference, gqa, [row], steps))
    return worst


def _parity(ckpt: DecoderCheckpoint, reference: ReferenceDecoder, model: onnx.ModelProto, rows: list[list[int]],
            steps: int) -> float:
    c = ckpt.config
    decoder = session_from_model(model)
    embed = session_from_model(build_embed(ckpt))
    batch, longest = len(rows), max(len(r) for r in rows)
    ids = np.zeros((batch, longest), np.int64)
    mask = np.zeros((batch, longest), np.int64)
    for i, row in enumerate(rows):
        ids[i, longest - len(row):] = row
        mask[i, longest - len(row):] = 1
    (embeds,) = embed.run(None, {"input_ids": ids})
    np.testing.assert_array_equal(embeds, reference.embed(ids).astype(np.float32))
    positions = np.maximum(np.cumsum(mask, axis=1) - 1, 0)
    logits, cache = run_decoder(decoder, embeds, mask, positions, empty_cache(c.layers, batch, c.kv_heads, c.head_dim))
    expected, ref_cache = reference.forward(embeds.astype(np.float64), mask, positions)
    assert logits.shape == (batch, c.vocab)
    worst = float(np.abs(logits - expected).max())
    assert worst < _relative_tolerance(expected)
    for _ in range(steps):
        tokens = np.argmax(expected, axis=1)
        (step,) = embed.run(None, {"input_ids": tokens[:, None]})
        mask = np.concatenate([mask, np.ones((batch, 1), np.int64)], axis=1)
        positions = positions[:, -1:] + 1
        logits, cache = run_decoder(decoder, step, mask, positions, cache)
        expected, ref_cache = reference.forward(step.astype(np.float64), mask, positions, ref_cache)
        assert cache[0].shape == (batch, c.kv_heads, mask.shape[1], c.head_dim)
        worst = max(worst, float(np.abs(logits - expected).max()))
        assert worst < _relative_tolerance(expected)
    return worst


@pytest.mark.parametrize("kind", ["llama", "qwen2"])
def test_hf_checkpoint_matches_reference(tmp_path: Path, kind: str) -> None:
    weights = write_hf_checkpoint(tmp_path / kind, kind)
    ckpt = load_hf(tmp_path / kind)
    c = ckpt.config
    assert c.architecture == kind and c.layers == 2 and c.kv_heads == 2
    assert c.head_dim == (32 if kind == "llama" else 16)
    assert c.tied_embeddings == (kind == "qwen2")
    assert ckpt.eos_token_ids == [2, 0]
    for name, array in weights.items():
        # llama is stored as bfloat16 (8 significant bits): the loader returns the rounded values.
        np.testing.assert_allclose(ckpt.get(name), array, rtol=2 ** -8 if kind == "llama" else 0, atol=1e-30)
    worst = assert_parity(ckpt, ReferenceDecoder(ckpt))
    print(f"\n{kind}: max abs logit diff {worst:.2e}")


def test_long_positions_use_scaled_rope(tmp_path: Path) -> None:
    # Positions up to the context end, past llama3's original_max_position_embeddings (32).
    write_hf_checkpoint(tmp_path / "llama", "llama", seed=3)
    ckpt = load_hf(tmp_path / "llama")
    decoder = session_from_model(build_decoder(ckpt))
    reference = ReferenceDecoder(ckpt)
    rng = np.random.default_rng(1)
    n = ckpt.config.context_length
    embeds = rng.standard_normal((1, n, ckpt.config.hidden)).astype(np.float32)
    c = ckpt.config
    logits, _ = run_decoder(decoder, embeds, np.ones((1, n)), np.arange(n)[None],
                            empty_cache(c.layers, 1, c.kv_heads, c.head_dim))
    expected, _ = reference.forward(embeds.astype(np.float64), np.ones((1, n), np.int64), np.arange(n)[None])
    assert np.abs(logits - expected).max() < _relative_tolerance(expected)
    # Without the scaling the result must differ: the test does exercise it.
    unscaled = replace(ckpt, config=replace(c, rope_scaling=None))
    other, _ = ReferenceDecoder(unscaled).forward(embeds.astype(np.float64), np.ones((1, n), np.int64),
                                                  np.arange(n)[None])
    assert np.abs(other - expected).max() > 100 * _relative_tolerance(expected)


def test_gguf_loader_undoes_the_rotary_permutation(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    weights = write_gguf(path)
    ckpt = load_gguf(path)
    raw = load_gguf(path, unpermute=False)
    c = ckpt.config
    assert (c.layers, c.heads, c.kv_heads, c.head_dim, c.vocab) == (2, 4, 2, 16, 300) and c.tied_embeddings
    for name, array in weights.items():
        np.testing.assert_array_equal(ckpt.get(name), array)
    q = weights["model.layers.0.self_attn.q_proj.weight"]
    np.testing.assert_array_equal(permute_rotary_rows(q, 4), llama_cpp_permute(q, 4))
    np.testing.assert_array_equal(unpermute_rotary_rows(llama_cpp_permute(q, 4), 4), q)
    # The reference on llama.cpp's layout (adjacent rotary pairs) and on the HF layout agree ...
    hf_layout = DecoderCheckpoint(config=c, get=weights.__getitem__, has=weights.__contains__, rope_layout="half",
                                  source_files=[], eos_token_ids=[2])
    rng = np.random.default_rng(0)
    embeds = rng.standard_normal((1, 9, c.hidden))
    a, _ = ReferenceDecoder(raw).forward(embeds, np.ones((1, 9), np.int64), np.arange(9)[None])
    b, _ = ReferenceDecoder(hf_layout).forward(embeds, np.ones((1, 9), np.int64), np.arange(9)[None])
    assert np.abs(a - b).max() < 1e-9
    # ... and the graph built from the un-permuted rows matches the reference on the raw ones.
    assert_parity(ckpt, ReferenceDecoder(raw))
    assert ckpt.eos_token_ids == [2, 0]


def test_gguf_tokenizer_matches_direct_bpe(tmp_path: Path) -> None:
    path = tmp_path / "tiny.gguf"
    write_gguf(path)
    rebuilt = tokenizer_from_gguf(path)
    direct = tiny_tokenizer()
    for text in PROMPTS + ["The cat, the hat: 3.14159!", "  spaces\tand\nnewlines  ", "émoji 🐈 ok"]:
        assert rebuilt.encode(text, add_special_tokens=False).ids == direct.encode(text, add_special_tokens=False).ids
        assert rebuilt.decode(rebuilt.encode(text).ids, skip_special_tokens=False) == text


def test_external_data_for_large_models(tmp_path: Path) -> None:
    write_hf_checkpoint(tmp_path / "qwen2", "qwen2")
    ckpt = load_hf(tmp_path / "qwen2")
    model = build_decoder(ckpt)
    in_memory = session_from_model(model)
    written = save_onnx(model, tmp_path / "decoder.onnx", external_data=True)
    assert [p.name for p in written] == ["decoder.onnx", "decoder.onnx.data"]
    assert (tmp_path / "decoder.onnx").stat().st_size < 100_000  # the weights are in the side file
    from_file = session(tmp_path / "decoder.onnx")
    c = ckpt.config
    embeds = np.random.default_rng(0).standard_normal((1, 5, c.hidden)).astype(np.float32)
    args = (embeds, np.ones((1, 5)), np.arange(5)[None], empty_cache(c.layers, 1, c.kv_heads, c.head_dim))
    np.testing.assert_array_equal(run_decoder(in_memory, *args)[0], run_decoder(from_file, *args)[0])


def test_export_cli_with_hf_checkpoint(tmp_path: Path, encoder_dir: Path) -> None:
    source = tmp_path / "tiny-llama"
    write_hf_checkpoint(source, "llama")
    out = tmp_path / "models" / "tiny"
    assert export_main(["--out", str(out), "--decoder-hf", str(source),
                        "--adapter", str(tmp_path / "absent.safetensors")]) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    d = manifest["decoder"]
    assert (d["architecture"], d["hidden"], d["layers"], d["heads"], d["kv_heads"], d["head_dim"], d["vocab"],
            d["context_length"]) == ("llama", 64, 2, 4, 2, 32, 300, 128)
    assert d["eos_token_ids"] == [2, 0] and manifest["adapter"] is None and manifest["name"] == "tiny"
    assert (out / "decoder_tokenizer.json").read_bytes() == (source / "tokenizer.json").read_bytes()
    assert sorted(manifest["files"]) == sorted(p.name for p in out.iterdir() if p.name != "manifest.json")
    for name, digest in manifest["files"].items():
        assert sha256_file(out / name) == digest
    golden = json.loads((out / "golden.json").read_text())
    assert len(golden["decoder"]) == 3 and all(1 <= len(c["greedy_ids"]) <= 16 for c in golden["decoder"])
    assert isinstance(session(out / "decoder.onnx"), ort.InferenceSession)


def test_a_q8_0_embedding_table_is_stored_as_int8_blocks_and_read_back_exactly() -> None:
    rng = np.random.default_rng(3)
    q = rng.integers(-127, 128, size=(50, 64)).astype(np.float32)
    q[:, ::32] = 127  # every block's largest value is 127 x its scale, as llama.cpp's Q8_0 makes it
    q[7, :32] = 0  # an all-zero block
    scales = rng.uniform(1e-3, 2e-2, size=(50, 2)).astype(np.float16).astype(np.float32)
    table = (q.reshape(50, 2, 32) * scales[:, :, None]).reshape(50, 64).astype(np.float32)
    values, got_scales = int8_blocks(table)
    assert values.dtype == np.int8 and got_scales.shape == (50, 2)
    config = DecoderConfig(architecture="llama", hidden=64, layers=1, heads=4, kv_heads=2, head_dim=16, ffn=8,
                           vocab=50, rope_theta=1e4, rms_eps=1e-6, context_length=16, tied_embeddings=True)
    ckpt = DecoderCheckpoint(config=config, get=lambda name: table, has=lambda name: True, rope_layout="half",
                             source_files=[], eos_token_ids=[0])
    model = build_embed(ckpt)
    assert {t.name for t in model.graph.initializer} >= {"embed_tokens_int8", "embed_tokens_scales"}
    ids = np.array([[0, 7, 49, 7]])
    (rows,) = session_from_model(model).run(None, {"input_ids": ids})
    np.testing.assert_array_equal(rows[0], table[ids[0]])
    # Anything else keeps the float32 table.
    assert int8_blocks(table + np.float32(1e-4)) is None
    assert int8_blocks(table[:, :40]) is None
