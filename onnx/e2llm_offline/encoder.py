"""BERT sentence encoder (all-MiniLM-L6-v2 and other BERT checkpoints) as ONNX.

Graph: word + position + token-type-0 embeddings → LayerNorm → N post-norm BERT layers (exact erf
GELU, additive padding mask) → mean over the tokens whose attention_mask is 1 → L2 normalisation.
Inputs ``input_ids``/``attention_mask`` int64 [batch, seq]; output ``embedding`` float32 [batch, dim].
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from tokenizers import Tokenizer

from .graph import FLOAT, INT64, GraphBuilder
from .tensors import SafetensorsCheckpoint


@dataclass(frozen=True)
class EncoderConfig:
    hidden: int
    heads: int
    layers: int
    intermediate: int
    layer_norm_eps: float
    max_positions: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.heads


def load_encoder_config(model_dir: Path) -> EncoderConfig:
    config = json.loads((Path(model_dir) / "config.json").read_text())
    if config.get("model_type") != "bert":
        raise ValueError(f"{model_dir}: model_type {config.get('model_type')!r} is not bert")
    if config.get("hidden_act", "gelu") != "gelu":
        raise ValueError(f"{model_dir}: hidden_act {config['hidden_act']!r} is not the exact gelu")
    if config.get("position_embedding_type", "absolute") != "absolute":
        raise ValueError(f"{model_dir}: only absolute position embeddings are supported")
    return EncoderConfig(
        hidden=config["hidden_size"], heads=config["num_attention_heads"], layers=config["num_hidden_layers"],
        intermediate=config["intermediate_size"], layer_norm_eps=float(config["layer_norm_eps"]),
        max_positions=config["max_position_embeddings"], vocab=config["vocab_size"],
    )


def pooling_mode(model_dir: Path) -> str:
    """The sentence-transformers pooling of the checkpoint; only mean pooling is supported."""
    path = Path(model_dir) / "1_Pooling" / "config.json"
    if path.is_file():
        pooling = json.loads(path.read_text())
        if not pooling.get("pooling_mode_mean_tokens") or any(
                pooling.get(k) for k in ("pooling_mode_cls_token", "pooling_mode_max_tokens",
                                         "pooling_mode_mean_sqrt_len_tokens")):
            raise ValueError(f"{path}: only mean pooling is supported, got {pooling}")
    return "mean"


class BertWeights:
    """Named access to a BERT checkpoint's tensors (with or without the ``bert.`` prefix)."""

    def __init__(self, model_dir: Path) -> None:
        self.checkpoint = SafetensorsCheckpoint(Path(model_dir))
        self.prefix = "bert." if "bert.embeddings.word_embeddings.weight" in self.checkpoint else ""

    def __getitem__(self, name: str) -> np.ndarray:
        return self.checkpoint.get(self.prefix + name)


def build_encoder(model_dir: Path) -> onnx.ModelProto:
    config = load_encoder_config(model_dir)
    pooling_mode(model_dir)
    w = BertWeights(model_dir)
    g = GraphBuilder("encoder")
    ids = g.input("input_ids", INT64, ["batch", "seq"])
    mask = g.input("attention_mask", INT64, ["batch", "seq"])

    # Embeddings. Token type ids are all 0: that row is folded into the position table.
    words = g.op("Gather", [g.weight(w["embeddings.word_embeddings.weight"], "word_embeddings"), ids], "words")
    positions_table = w["embeddings.position_embeddings.weight"] + w["embeddings.token_type_embeddings.weight"][0]
    seq_len = g.op("Shape", [ids], "seq_len", start=1, end=2)
    positions = g.op("Slice", [g.weight(positions_table, "position_embeddings_plus_type0"), g.const([0]), seq_len,
                               g.const([0])], "positions")
    x = g.op("Add", [words, positions], "embeddings")
    x = layer_norm(g, x, w, "embeddings.LayerNorm", config.layer_norm_eps)

    # Additive attention mask [batch, 1, 1, seq]: 0 for tokens, -1e30 for padding.
    mask_f = g.op("Cast", [mask], "mask_f", to=FLOAT)
    masked = g.op("Sub", [g.const(1.0, np.float32), mask_f], "mask_inv")
    additive = g.op("Mul", [masked, g.const(-1e30, np.float32)], "mask_add")
    additive = g.op("Unsqueeze", [additive, g.const([1, 2])], "mask_add4")

    heads, head_dim, hidden = config.heads, config.head_dim, config.hidden
    scale = 1.0 / np.sqrt(head_dim)
    for i in range(config.layers):
        p = f"encoder.layer.{i}"
        # Fused QKV projection, the 1/sqrt(head_dim) score scale folded into the query weights.
        wq = w[f"{p}.attention.self.query.weight"] * scale
        bq = w[f"{p}.attention.self.query.bias"] * scale
        w_qkv = np.concatenate([wq, w[f"{p}.attention.self.key.weight"], w[f"{p}.attention.self.value.weight"]], 0)
        b_qkv = np.concatenate([bq, w[f"{p}.attention.self.key.bias"], w[f"{p}.attention.self.value.bias"]])
        qkv = g.linear(x, w_qkv.T, b_qkv, f"l{i}.qkv")
        q, k, v = g.ops("Split", [qkv, g.const([hidden] * 3)], f"l{i}.qkv_split", outputs=3, axis=2)
        split_heads = g.const([0, 0, heads, head_dim])
        q = g.op("Transpose", [g.op("Reshape", [q, split_heads], f"l{i}.q4")], f"l{i}.q", perm=[0, 2, 1, 3])
        k = g.op("Transpose", [g.op("Reshape", [k, split_heads], f"l{i}.k4")], f"l{i}.kt", perm=[0, 2, 3, 1])
        v = g.op("Transpose", [g.op("Reshape", [v, split_heads], f"l{i}.v4")], f"l{i}.v", perm=[0, 2, 1, 3])
        scores = g.op("Add", [g.op("MatMul", [q, k], f"l{i}.scores"), additive], f"l{i}.scores_masked")
        probs = g.op("Softmax", [scores], f"l{i}.probs", axis=-1)
        context = g.op("Transpose", [g.op("MatMul", [probs, v], f"l{i}.ctx4")], f"l{i}.ctx_t", perm=[0, 2, 1, 3])
        context = g.op("Reshape", [context, g.const([0, 0, hidden])], f"l{i}.ctx")
        attn = g.linear(context, w[f"{p}.attention.output.dense.weight"].T, w[f"{p}.attention.output.dense.bias"],
                        f"l{i}.attn_out")
        x = layer_norm(g, g.op("Add", [attn, x], f"l{i}.attn_res"), w, f"{p}.attention.output.LayerNorm",
                       config.layer_norm_eps)
        inter = g.linear(x, w[f"{p}.intermediate.dense.weight"].T, w[f"{p}.intermediate.dense.bias"], f"l{i}.ffn_in")
        inter = g.gelu_exact(inter, f"l{i}.gelu")
        out = g.linear(inter, w[f"{p}.output.dense.weight"].T, w[f"{p}.output.dense.bias"], f"l{i}.ffn_out")
        x = layer_norm(g, g.op("Add", [out, x], f"l{i}.ffn_res"), w, f"{p}.output.LayerNorm", config.layer_norm_eps)

    # Masked mean pooling, then L2 normalisation (as sentence-transformers' Pooling + Normalize); float32
    # in the float16 variant (sums over up to 512 positions, clamps at 1e-9 and 1e-12).
    with g.float32():
        mask3 = g.op("Unsqueeze", [mask_f, g.const([2])], "mask3")
        summed = g.op("ReduceSum", [g.op("Mul", [x, mask3], "masked_hidden"), g.const([1])], "summed", keepdims=0)
        counts = g.op("ReduceSum", [mask_f, g.const([1])], "counts", keepdims=1)
        counts = g.op("Max", [counts, g.const(1e-9, np.float32)], "counts_clamped")
        mean = g.op("Div", [summed, counts], "mean")
        norm = g.op("ReduceL2", [mean], "norm", axes=[1], keepdims=1)
        norm = g.op("Max", [norm, g.const(1e-12, np.float32)], "norm_clamped")
        embedding = g.named_op("Div", [mean, norm], "embedding")
    g.output(embedding, "embedding", FLOAT, ["batch", hidden])
    return g.model(doc=f"BERT sentence encoder from {Path(model_dir).name}: mean pooling, L2-normalised")


def layer_norm(g: GraphBuilder, x: str, w: BertWeights, name: str, eps: float) -> str:
    return g.op("LayerNormalization", [x, g.weight(w[f"{name}.weight"], f"{name}.weight"),
                                       g.weight(w[f"{name}.bias"], f"{name}.bias")],
                name.replace(".", "_"), axis=-1, epsilon=eps)


def encoder_tokenizer_json(model_dir: Path) -> str:
    """The checkpoint's tokenizer.json without its padding and truncation (the runtime sets them)."""
    tokenizer = Tokenizer.from_file(str(Path(model_dir) / "tokenizer.json"))
    tokenizer.no_padding()
    tokenizer.no_truncation()
    return tokenizer.to_str(pretty=False)
