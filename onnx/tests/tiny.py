"""Tiny randomly initialised llama / qwen2 checkpoints written by the tests themselves: a Hugging
Face directory (config.json, safetensors, tokenizer.json) and a llama.cpp-style GGUF."""

from __future__ import annotations

import json
from pathlib import Path

import gguf
import numpy as np
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

from e2llm_offline.tensors import write_safetensors

SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("Ġ", "a"), ("e", "r"), ("o", "n"), ("Ġ", "s"),
          ("r", "e"), ("a", "t"), ("Ġ", "c"), ("Ġc", "at")]


def tiny_vocab() -> list[str]:
    tokens = SPECIALS + sorted(pre_tokenizers.ByteLevel.alphabet())
    tokens += [a + b for a, b in MERGES]
    return tokens


def tiny_tokenizer() -> Tokenizer:
    """Byte-level BPE over the tiny vocabulary, built directly with the tokenizers library."""
    tokens = tiny_vocab()
    tokenizer = Tokenizer(models.BPE(vocab={t: i for i, t in enumerate(tokens)}, merges=MERGES))
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)])
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIALS])
    return tokenizer


def tiny_config(kind: str) -> dict:
    config = {
        "model_type": kind, "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "intermediate_size": 96, "vocab_size": 300, "rms_norm_eps": 1e-6,
        "rope_theta": 10000.0, "max_position_embeddings": 128, "hidden_act": "silu", "eos_token_id": 2,
    }
    if kind == "llama":
        # An explicit head_dim unlike hidden/heads, untied lm_head, llama3 rope scaling.
        config.update(head_dim=32, tie_word_embeddings=False, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32})
    else:
        config.update(tie_word_embeddings=True, use_sliding_window=False)
    return config


def tiny_weights(config: dict, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    hidden, ffn = config["hidden_size"], config["intermediate_size"]
    heads, kv = config["num_attention_heads"], config["num_key_value_heads"]
    head_dim = config.get("head_dim", hidden // heads)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)

    def norm() -> np.ndarray:
        return (1.0 + 0.2 * rng.standard_normal(hidden)).astype(np.float32)

    w = {"model.embed_tokens.weight": rng.standard_normal((config["vocab_size"], hidden)).astype(np.float32),
         "model.norm.weight": norm()}
    if not config.get("tie_word_embeddings", False):
        w["lm_head.weight"] = matrix(config["vocab_size"], hidden)
    for i in range(config["num_hidden_layers"]):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = norm()
        w[f"{p}.post_attention_layernorm.weight"] = norm()
        w[f"{p}.self_attn.q_proj.weight"] = matrix(heads * head_dim, hidden)
        w[f"{p}.self_attn.k_proj.weight"] = matrix(kv * head_dim, hidden)
        w[f"{p}.self_attn.v_proj.weight"] = matrix(kv * head_dim, hidden)
        w[f"{p}.self_attn.o_proj.weight"] = matrix(hidden, heads * head_dim)
        if config["model_type"] == "qwen2":
            for name, rows in (("q", heads * head_dim), ("k", kv * head_dim), ("v", kv * head_dim)):
                w[f"{p}.self_attn.{name}_proj.bias"] = (0.5 * rng.standard_normal(rows)).astype(np.float32)
        w[f"{p}.mlp.gate_proj.weight"] = matrix(ffn, hidden)
        w[f"{p}.mlp.up_proj.weight"] = matrix(ffn, hidden)
        w[f"{p}.mlp.down_proj.weight"] = matrix(hidden, ffn)
    return w


def write_hf_checkpoint(directory: Path, kind: str, seed: int = 0) -> dict[str, np.ndarray]:
    """llama: one bfloat16 model.safetensors; qwen2: two float32 shards with an index."""
    directory.mkdir(parents=True, exist_ok=True)
    config = tiny_config(kind)
    weights = tiny_weights(config, seed)
    (directory / "config.json").write_text(json.dumps(config))
    (directory / "generation_config.json").write_text(json.dumps({"eos_token_id": [2, 0]}))
    tiny_tokenizer().save(str(directory / "tokenizer.json"))
    if kind == "llama":
        write_safetensors(directory / "model.safetensors", weights, bf16=set(weights))
    else:
        names = list(weights)
        shards = {"model-00001-of-00002.safetensors": names[: len(names) // 2],
                  "model-00002-of-00002.safetensors": names[len(names) // 2:]}
        weight_map = {}
        for file, part in shards.items():
            write_safetensors(directory / file, {n: weights[n] for n in part})
            weight_map.update({n: file for n in part})
        (directory / "model.safetensors.index.json").write_text(json.dumps({"weight_map": weight_map}))
    return weights


def llama_cpp_permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """The Q/K row permutation of llama.cpp's convert_hf_to_gguf.py (rotate-half → adjacent pairs)."""
    return (weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
            .swapaxes(1, 2).reshape(weight.shape))


def write_gguf(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """A llama GGUF as llama.cpp's converter writes it: Q/K rows permuted, float32 tensors, tied
    embeddings, the tiny byte-level BPE vocabulary. Returns the Hugging Face-layout weights."""
    config = tiny_config("llama")
    config.update(head_dim=16, tie_word_embeddings=True, rope_scaling=None)
    weights = tiny_weights(config, seed)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_context_length(config["max_position_embeddings"])
    writer.add_embedding_length(config["hidden_size"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(config["num_attention_heads"])
    writer.add_head_count_kv(config["num_key_value_heads"])
    writer.add_rope_freq_base(config["rope_theta"])
    writer.add_layer_norm_rms_eps(config["rms_norm_eps"])
    writer.add_rope_dimension_count(16)
    writer.add_vocab_size(config["vocab_size"])
    tokens = tiny_vocab()
    tokens += [f"<unused{i}>" for i in range(config["vocab_size"] - len(tokens))]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types([gguf.TokenType.CONTROL if t in SPECIALS else gguf.TokenType.NORMAL for t in tokens])
    writer.add_token_merges([f"{a} {b}" for a, b in MERGES])
    writer.add_eos_token_id(2)
    writer.add_bos_token_id(1)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight"}
    layer_names = {"input_layernorm.weight": "attn_norm.weight", "post_attention_layernorm.weight": "ffn_norm.weight",
                   "self_attn.q_proj.weight": "attn_q.weight", "self_attn.k_proj.weight": "attn_k.weight",
                   "self_attn.v_proj.weight": "attn_v.weight", "self_attn.o_proj.weight": "attn_output.weight",
                   "mlp.gate_proj.weight": "ffn_gate.weight", "mlp.up_proj.weight": "ffn_up.weight",
                   "mlp.down_proj.weight": "ffn_down.weight"}
    for i in range(config["num_hidden_layers"]):
        for hf, gg in layer_names.items():
            names[f"model.layers.{i}.{hf}"] = f"blk.{i}.{gg}"
    for hf_name, gguf_name in names.items():
        array = weights[hf_name]
        if hf_name.endswith("q_proj.weight"):
            array = llama_cpp_permute(array, config["num_attention_heads"])
        elif hf_name.endswith("k_proj.weight"):
            array = llama_cpp_permute(array, config["num_key_value_heads"])
        writer.add_tensor(gguf_name, np.ascontiguousarray(array))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return weights
