"""Llama-family decoder (llama, qwen2) as ONNX with a KV cache, and the loaders that feed it.

Loaders produce a :class:`DecoderCheckpoint`: the configuration plus lazy access to float32 weights
under Hugging Face names in torch layout (``[out, in]``), whichever the source:

* :func:`load_gguf` -- a llama.cpp GGUF file (``llama`` architecture), dequantised with the ``gguf``
  package. llama.cpp's converter permutes the rows of ``q_proj``/``k_proj`` so that rotary pairs are
  adjacent (its "normal" rope); :func:`unpermute_rotary_rows` undoes that, so the graph uses Hugging
  Face's "rotate half" rotary. ``unpermute=False`` keeps llama.cpp's layout (``rope_layout
  ="interleaved"``), which the NumPy reference uses to check the un-permutation independently.
* :func:`load_hf` -- a Hugging Face safetensors checkpoint directory with ``model_type`` llama or
  qwen2 (q/k/v biases, untied ``lm_head``, explicit ``head_dim``, llama3/linear rope scaling).

:func:`build_decoder` writes the graph described in ``onnx/FORMAT.md``; :func:`build_embed` the
token-embedding lookup.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from collections.abc import Callable

import gguf
import numpy as np
import onnx

from .graph import FLOAT, INT32, INT64, MICROSOFT, GraphBuilder
from .tensors import SafetensorsCheckpoint

RopeLayout = Literal["half", "interleaved"]


@dataclass(frozen=True)
class DecoderConfig:
    architecture: str  # "llama" or "qwen2"
    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    rope_theta: float
    rms_eps: float
    context_length: int
    tied_embeddings: bool
    rope_scaling: dict | None = field(default=None, hash=False)

    def __post_init__(self) -> None:
        if self.heads % self.kv_heads:
            raise ValueError(f"{self.heads} attention heads are not a multiple of {self.kv_heads} KV heads")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} is odd")


@dataclass
class DecoderCheckpoint:
    """A decoder's configuration and weights (Hugging Face names, torch layout, float32)."""

    config: DecoderConfig
    get: Callable[[str], np.ndarray]
    has: Callable[[str], bool]
    rope_layout: RopeLayout
    source_files: list[Path]  # the weight files, hashed into the fingerprint
    eos_token_ids: list[int]

    def lm_head(self) -> np.ndarray:
        """[vocab, hidden]: the embedding table when tied."""
        if self.config.tied_embeddings:
            return self.get("model.embed_tokens.weight")
        return self.get("lm_head.weight")


def rope_inv_freq(config: DecoderConfig) -> np.ndarray:
    """Rotary inverse frequencies (float64, [head_dim/2]), with llama3 or linear scaling if configured."""
    dim = config.head_dim
    inv_freq = 1.0 / (config.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    scaling = config.rope_scaling
    if not scaling:
        return inv_freq
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / float(scaling["factor"])
    if kind == "llama3":
        factor = float(scaling["factor"])
        low, high = float(scaling["low_freq_factor"]), float(scaling["high_freq_factor"])
        original = float(scaling["original_max_position_embeddings"])
        wavelen = 2 * math.pi / inv_freq
        scaled = np.where(wavelen > original / low, inv_freq / factor, inv_freq)
        smooth = (original / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= original / high) & (wavelen <= original / low)
        return np.where(medium, smoothed, scaled)
    raise NotImplementedError(f"rope scaling {kind!r} is not supported (default, linear and llama3 are)")


# --------------------------------------------------------------------------------------------------
# GGUF


_GGUF_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
}
_GGUF_LAYER_NAMES = {
    "input_layernorm.weight": "attn_norm.weight",
    "self_attn.q_proj.weight": "attn_q.weight",
    "self_attn.k_proj.weight": "attn_k.weight",
    "self_attn.v_proj.weight": "attn_v.weight",
    "self_attn.o_proj.weight": "attn_output.weight",
    "self_attn.q_proj.bias": "attn_q.bias",
    "self_attn.k_proj.bias": "attn_k.bias",
    "self_attn.v_proj.bias": "attn_v.bias",
    "post_attention_layernorm.weight": "ffn_norm.weight",
    "mlp.gate_proj.weight": "ffn_gate.weight",
    "mlp.up_proj.weight": "ffn_up.weight",
    "mlp.down_proj.weight": "ffn_down.weight",
}
_LAYER_RE = re.compile(r"model\.layers\.(\d+)\.(.+)")


def gguf_name(hf_name: str) -> str | None:
    if hf_name in _GGUF_NAMES:
        return _GGUF_NAMES[hf_name]
    match = _LAYER_RE.fullmatch(hf_name)
    if match and match.group(2) in _GGUF_LAYER_NAMES:
        return f"blk.{match.group(1)}.{_GGUF_LAYER_NAMES[match.group(2)]}"
    return None


def unpermute_rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Inverse of llama.cpp's ``permute`` (convert_hf_to_gguf.py), which reorders each head's rows
    from the "rotate half" layout (pairs i and i + d/2) to adjacent pairs (2i, 2i + 1).
    Works for weights [heads*d, in] and biases [heads*d]."""
    rows = weight.shape[0]
    head_dim = rows // heads
    rest = weight.shape[1:]
    return weight.reshape(heads, head_dim // 2, 2, *rest).swapaxes(1, 2).reshape(weight.shape)


def permute_rotary_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's permutation (the inverse of :func:`unpermute_rotary_rows`); used by tests."""
    rows = weight.shape[0]
    head_dim = rows // heads
    rest = weight.shape[1:]
    return weight.reshape(heads, 2, head_dim // 2, *rest).swapaxes(1, 2).reshape(weight.shape)


def load_lora(path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """LoRA deltas from training (``<weight name minus .weight>.lora_a`` [rank, in] and ``.lora_b``
    [out, rank], scale folded into B) as full deltas per weight name (Hugging Face layout), and the
    file's metadata (base_decoder_fingerprint, rank, alpha, targets)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = dict(handle.metadata() or {})
        tensors = {k: handle.get_tensor(k).astype(np.float32) for k in handle.keys()}
    deltas = {}
    for key, a in tensors.items():
        if key.endswith(".lora_a"):
            base = key[: -len(".lora_a")]
            b = tensors.get(base + ".lora_b")
            if b is None or b.shape[1] != a.shape[0]:
                raise ValueError(f"{path}: {base}.lora_b missing or of the wrong rank")
            deltas[base + ".weight"] = b @ a
    if not deltas:
        raise ValueError(f"{path}: no LoRA tensors (*.lora_a / *.lora_b)")
    return deltas, metadata


def with_lora(ckpt: DecoderCheckpoint, deltas: dict[str, np.ndarray]) -> DecoderCheckpoint:
    """The checkpoint with LoRA deltas (Hugging Face layout) added to its weights, in its own rotary
    layout (GGUF's interleaved Q/K rows get the deltas permuted the same way)."""
    unknown = [name for name in deltas if not ckpt.has(name)]
    if unknown:
        raise ValueError(f"LoRA deltas for weights the decoder does not have: {unknown[:3]}")
    base_get = ckpt.get

    def get(name: str) -> np.ndarray:
        weight = base_get(name)
        delta = deltas.get(name)
        if delta is None:
            return weight
        if delta.shape != weight.shape:
            raise ValueError(f"LoRA delta for {name} has shape {delta.shape}, the weight {weight.shape}")
        if ckpt.rope_layout == "interleaved" and name.endswith(("q_proj.weight", "k_proj.weight")):
            delta = permute_rotary_rows(delta, ckpt.config.heads if "q_proj" in name else ckpt.config.kv_heads)
        return (weight + delta).astype(np.float32)

    return replace(ckpt, get=get)


def _field(reader: gguf.GGUFReader, key: str, default: object = None) -> object:
    item = reader.fields.get(key)
    return default if item is None else item.contents()


def load_gguf(path: Path, unpermute: bool = True) -> DecoderCheckpoint:
    path = Path(path)
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch != "llama":
        raise NotImplementedError(f"{path}: GGUF architecture {arch!r} is not supported (llama is)")
    hidden = int(_field(reader, "llama.embedding_length"))
    heads = int(_field(reader, "llama.attention.head_count"))
    head_dim = int(_field(reader, "llama.attention.key_length", hidden // heads))
    rope_dims = int(_field(reader, "llama.rope.dimension_count", head_dim))
    if rope_dims != head_dim:
        raise NotImplementedError(f"{path}: partial rotary ({rope_dims} of {head_dim} dims) is not supported")
    scaling = _field(reader, "llama.rope.scaling.type", "none")
    if scaling not in ("none", None):
        raise NotImplementedError(f"{path}: GGUF rope scaling {scaling!r} is not supported")
    tensors = {t.name: t for t in reader.tensors}
    tokens = _field(reader, "tokenizer.ggml.tokens")
    config = DecoderConfig(
        architecture="llama", hidden=hidden, layers=int(_field(reader, "llama.block_count")), heads=heads,
        kv_heads=int(_field(reader, "llama.attention.head_count_kv", heads)), head_dim=head_dim,
        ffn=int(_field(reader, "llama.feed_forward_length")),
        vocab=int(_field(reader, "llama.vocab_size", len(tokens) if tokens else 0)),
        rope_theta=float(_field(reader, "llama.rope.freq_base", 10000.0)),
        rms_eps=float(_field(reader, "llama.attention.layer_norm_rms_epsilon")),
        context_length=int(_field(reader, "llama.context_length")),
        tied_embeddings="output.weight" not in tensors,
    )

    def has(name: str) -> bool:
        mapped = gguf_name(name)
        return mapped is not None and mapped in tensors

    def get(name: str) -> np.ndarray:
        mapped = gguf_name(name)
        if mapped is None or mapped not in tensors:
            raise KeyError(f"{path}: no tensor for {name}")
        tensor = tensors[mapped]
        array = gguf.quants.dequantize(tensor.data, tensor.tensor_type).astype(np.float32, copy=False)
        expected = tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists dims innermost first
        array = np.ascontiguousarray(array.reshape(expected))
        if unpermute and (name.endswith("q_proj.weight") or name.endswith("q_proj.bias")):
            array = unpermute_rotary_rows(array, config.heads)
        elif unpermute and (name.endswith("k_proj.weight") or name.endswith("k_proj.bias")):
            array = unpermute_rotary_rows(array, config.kv_heads)
        return array

    return DecoderCheckpoint(config=config, get=get, has=has, rope_layout="half" if unpermute else "interleaved",
                             source_files=[path], eos_token_ids=gguf_eos_ids(reader))


def gguf_eos_ids(reader: gguf.GGUFReader) -> list[int]:
    """The GGUF's eos (and end-of-turn) token, then the chat end markers present as control tokens."""
    ids: list[int] = []
    for key in ("tokenizer.ggml.eos_token_id", "tokenizer.ggml.eot_token_id"):
        value = _field(reader, key)
        if value is not None:
            ids.append(int(value))
    tokens = _field(reader, "tokenizer.ggml.tokens") or []
    types = _field(reader, "tokenizer.ggml.token_type") or []
    for marker in END_MARKERS:
        if marker in tokens:
            index = tokens.index(marker)
            if types and types[index] == gguf.TokenType.CONTROL:
                ids.append(index)
    return list(dict.fromkeys(ids))


END_MARKERS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>")


# --------------------------------------------------------------------------------------------------
# Hugging Face safetensors


def load_hf(directory: Path) -> DecoderCheckpoint:
    directory = Path(directory)
    raw = json.loads((directory / "config.json").read_text())
    model_type = raw.get("model_type")
    if model_type not in ("llama", "qwen2"):
        raise NotImplementedError(f"{directory}: model_type {model_type!r} is not supported (llama, qwen2 are)")
    if raw.get("hidden_act", "silu") != "silu":
        raise NotImplementedError(f"{directory}: hidden_act {raw['hidden_act']!r} (only silu)")
    if model_type == "qwen2" and raw.get("use_sliding_window", False):
        raise NotImplementedError(f"{directory}: qwen2 sliding-window attention is not supported")
    rope_parameters = raw.get("rope_parameters") or {}
    rope_scaling = raw.get("rope_scaling") or (rope_parameters if rope_parameters.get("rope_type", "default")
                                               != "default" else None)
    heads = raw["num_attention_heads"]
    checkpoint = SafetensorsCheckpoint(directory)
    tied = bool(raw.get("tie_word_embeddings", False))
    if not tied and "lm_head.weight" not in checkpoint:
        raise ValueError(f"{directory}: tie_word_embeddings is false but there is no lm_head.weight")
    config = DecoderConfig(
        architecture=model_type, hidden=raw["hidden_size"], layers=raw["num_hidden_layers"], heads=heads,
        kv_heads=raw.get("num_key_value_heads") or heads,
        head_dim=raw.get("head_dim") or raw["hidden_size"] // heads, ffn=raw["intermediate_size"],
        vocab=raw["vocab_size"],
        rope_theta=float(raw.get("rope_theta", rope_parameters.get("rope_theta", 10000.0))),
        rms_eps=float(raw.get("rms_norm_eps", 1e-6)),
        context_length=int(raw.get("max_position_embeddings", 4096)), tied_embeddings=tied,
        rope_scaling=rope_scaling,
    )
    return DecoderCheckpoint(config=config, get=checkpoint.get, has=checkpoint.__contains__, rope_layout="half",
                             source_files=list(checkpoint.paths), eos_token_ids=hf_eos_ids(directory, raw))


def hf_eos_ids(directory: Path, config: dict) -> list[int]:
    """eos ids of config.json and generation_config.json, then chat end markers of tokenizer.json."""
    ids: list[int] = []
    sources = [config]
    generation = directory / "generation_config.json"
    if generation.is_file():
        sources.append(json.loads(generation.read_text()))
    for source in sources:
        value = source.get("eos_token_id")
        if isinstance(value, int):
            ids.append(value)
        elif isinstance(value, list):
            ids.extend(int(v) for v in value)
    tokenizer = directory / "tokenizer.json"
    if tokenizer.is_file():
        added = {t["content"]: t["id"] for t in json.loads(tokenizer.read_text()).get("added_tokens", [])
                 if t.get("special")}
        ids.extend(added[m] for m in END_MARKERS if m in added)
    return list(dict.fromkeys(ids))


# --------------------------------------------------------------------------------------------------
# Graphs


def rope_tables(config: DecoderConfig) -> tuple[np.ndarray, np.ndarray]:
    """cos [P, d] and signed sin [P, d] for the "rotate half" rotary, computed in float64:
    ``rot(x) = x * cos + swap_halves(x) * sin_signed`` with ``sin_signed = [-sin, sin]``."""
    positions = np.arange(config.context_length, dtype=np.float64)
    angles = positions[:, None] * rope_inv_freq(config)[None, :]
    cos, sin = np.cos(angles), np.sin(angles)
    return (np.concatenate([cos, cos], axis=1).astype(np.float32),
            np.concatenate([-sin, sin], axis=1).astype(np.float32))


def _rms_norm(g: GraphBuilder, x: str, weight: np.ndarray, eps: float, hint: str) -> str:
    # Pow → ReduceMean → Add → Sqrt → Div → Mul: the pattern ONNX Runtime fuses into one kernel.
    # float32 up to the Div in the float16 variant: x² overflows float16 once |x| > 256.
    with g.float32():
        squared = g.op("Pow", [x, g.const(2.0, np.float32)], f"{hint}_sq")
        mean = g.op("ReduceMean", [squared], f"{hint}_mean", axes=[-1], keepdims=1)
        std = g.op("Sqrt", [g.op("Add", [mean, g.const(eps, np.float32)], f"{hint}_eps")], f"{hint}_std")
        normalized = g.op("Div", [x, std], f"{hint}_div")
    return g.op("Mul", [normalized, g.weight(weight, f"{hint}.weight")], hint)


def _optional(ckpt: DecoderCheckpoint, name: str) -> np.ndarray | None:
    return ckpt.get(name) if ckpt.has(name) else None


def build_decoder(ckpt: DecoderCheckpoint, progress: Callable[[str], None] | None = None,
                  gqa: bool = True) -> onnx.ModelProto:
    """The decoder graph: next-token logits of the last position and the KV cache.

    ``gqa`` (decoder.onnx): attention is ONNX Runtime's fused ``GroupQueryAttention``, which applies the
    rotary itself and writes the new keys and values into the cache in place when ``present.*`` is bound
    to the same buffer as ``past_key_values.*`` (a cache of fixed capacity, [batch, kv, capacity, head]),
    or returns past + new (a cache of exactly the positions so far) when it is not. Inputs
    ``seqlens_k`` (int32 [batch], total length - 1) and ``total_sequence_length`` (int32 scalar) say
    which positions hold data; batch rows share one length (no padding). Otherwise (the RCC encoder,
    which keeps every layer's keys and values of a segment): explicit attention with an
    ``attention_mask`` input, the cache returned as past + new.
    """
    if ckpt.rope_layout != "half":
        raise ValueError("the graph uses rotate-half rotary: load the GGUF with unpermute=True")
    c = ckpt.config
    if gqa and c.head_dim % 16:
        raise ValueError(f"ONNX Runtime's GroupQueryAttention needs a head size that is a multiple of 16, "
                         f"not {c.head_dim}")
    g = GraphBuilder("decoder")
    heads, kv, hd = c.heads, c.kv_heads, c.head_dim
    embeds = g.input("inputs_embeds", FLOAT, ["batch", "seq", c.hidden])
    if gqa:
        position_ids = g.input("position_ids", INT64, ["batch", "seq"])
        seqlens_k = g.input("seqlens_k", INT32, ["batch"])
        total_length = g.input("total_sequence_length", INT32, [])
    else:
        attention_mask = g.input("attention_mask", INT64, ["batch", "total_seq"])
        position_ids = g.input("position_ids", INT64, ["batch", "seq"])
    past = []
    for i in range(c.layers):
        past.append((g.input(f"past_key_values.{i}.key", FLOAT, ["batch", kv, "past_seq", hd]),
                     g.input(f"past_key_values.{i}.value", FLOAT, ["batch", kv, "past_seq", hd])))
    cos_table, sin_table = rope_tables(c)
    scale = 1.0 / math.sqrt(hd)

    if gqa:
        # GroupQueryAttention's rotary tables: cos and sin of the first half [P, head_dim / 2].
        cos_half = g.weight(cos_table[:, : hd // 2], "rope_cos_half")
        sin_half = g.weight(sin_table[:, hd // 2:], "rope_sin_half")

        def attention(qkv: str, i: int) -> tuple[str, str, str]:
            keys, values = f"present.{i}.key", f"present.{i}.value"
            # Packed q|k|v in; the score scale is already in q (scale=1).
            context = g.named_ops("GroupQueryAttention",
                                  [qkv, "", "", past[i][0], past[i][1], seqlens_k, total_length, cos_half, sin_half,
                                   position_ids],
                                  [f"l{i}.context", keys, values], domain=MICROSOFT, num_heads=heads,
                                  kv_num_heads=kv, do_rotary=1, rotary_interleaved=0, scale=1.0)[0]
            return context, keys, values
    else:
        # Additive mask [batch, 1, seq, total]: query t (absolute index past + t) sees key j iff
        # j <= past + t and attention_mask[j] == 1; 0 where allowed, the lowest float32 elsewhere.
        total = g.op("Shape", [attention_mask], "total_len", start=1, end=2)
        seq = g.op("Shape", [embeds], "seq_len", start=1, end=2)
        past_len = g.op("Squeeze", [g.op("Sub", [total, seq], "past_len1"), g.const([0])], "past_len")
        total_s = g.op("Squeeze", [total, g.const([0])], "total_s")
        key_index = g.op("Unsqueeze", [g.op("Range", [g.const(0), total_s, g.const(1)], "key_range"),
                                       g.const([0])], "key_index")
        query_index = g.op("Unsqueeze", [g.op("Range", [past_len, total_s, g.const(1)], "query_range"),
                                         g.const([1])], "query_index")
        causal = g.op("LessOrEqual", [key_index, query_index], "causal")
        padding = g.op("Unsqueeze", [g.op("Cast", [attention_mask], "mask_bool", to=onnx.TensorProto.BOOL),
                                     g.const([1, 2])], "mask_bool4")
        allowed = g.op("And", [causal, padding], "allowed")
        additive = g.op("Where", [allowed, g.const(0.0, np.float32),
                                  g.const(np.finfo(np.float32).min, np.float32)], "mask_add")
        # Rotary tables gathered at position_ids: [batch, 1, seq, head_dim].
        cos = g.op("Unsqueeze", [g.op("Gather", [g.weight(cos_table, "rope_cos"), position_ids], "cos3"),
                                 g.const([1])], "cos")
        sin = g.op("Unsqueeze", [g.op("Gather", [g.weight(sin_table, "rope_sin_signed"), position_ids], "sin3"),
                                 g.const([1])], "sin")
        half = g.const([hd // 2, hd // 2])

        def rotary(x: str, hint: str) -> str:
            first, second = g.ops("Split", [x, half], f"{hint}_halves", outputs=2, axis=-1)
            swapped = g.op("Concat", [second, first], f"{hint}_swapped", axis=-1)
            return g.op("Add", [g.op("Mul", [x, cos], f"{hint}_cos"), g.op("Mul", [swapped, sin], f"{hint}_sin")],
                        hint)

        def attention(qkv: str, i: int) -> tuple[str, str, str]:
            q, k, v = g.ops("Split", [qkv, g.const([heads * hd, kv * hd, kv * hd])], f"l{i}.qkv_split", outputs=3,
                            axis=2)
            q = g.op("Transpose", [g.op("Reshape", [q, g.const([0, 0, heads, hd])], f"l{i}.q4")], f"l{i}.q",
                     perm=[0, 2, 1, 3])
            k = g.op("Transpose", [g.op("Reshape", [k, g.const([0, 0, kv, hd])], f"l{i}.k4")], f"l{i}.k",
                     perm=[0, 2, 1, 3])
            v = g.op("Transpose", [g.op("Reshape", [v, g.const([0, 0, kv, hd])], f"l{i}.v4")], f"l{i}.v",
                     perm=[0, 2, 1, 3])
            q, k = rotary(q, f"l{i}.q_rot"), rotary(k, f"l{i}.k_rot")
            keys = g.named_op("Concat", [past[i][0], k], f"present.{i}.key", axis=2)
            values = g.named_op("Concat", [past[i][1], v], f"present.{i}.value", axis=2)
            # Grouped-query attention without copying the KV heads: the query heads sharing KV head j
            # (heads j*rep .. j*rep+rep-1, as HF's repeat_kv) are stacked along the sequence axis.
            grouped = g.op("Reshape", [q, g.const([0, kv, -1, hd])], f"l{i}.q_grouped")
            keys_t = g.op("Transpose", [keys], f"l{i}.keys_t", perm=[0, 1, 3, 2])
            scores = g.op("MatMul", [grouped, keys_t], f"l{i}.scores_grouped")
            scores = g.op("Reshape", [scores, g.const([0, heads, -1, 0])], f"l{i}.scores")
            probs = g.op("Softmax", [g.op("Add", [scores, additive], f"l{i}.scores_masked")], f"l{i}.probs", axis=-1)
            probs = g.op("Reshape", [probs, g.const([0, kv, -1, 0])], f"l{i}.probs_grouped")
            context = g.op("MatMul", [probs, values], f"l{i}.context_grouped")
            context = g.op("Reshape", [context, g.const([0, heads, -1, hd])], f"l{i}.context4")
            context = g.op("Transpose", [context], f"l{i}.context_t", perm=[0, 2, 1, 3])
            return g.op("Reshape", [context, g.const([0, 0, heads * hd])], f"l{i}.context"), keys, values

    presents: list[tuple[str, str]] = []
    x = embeds
    for i in range(c.layers):
        if progress and i % 10 == 0:
            progress(f"decoder layers {i + 1}-{min(i + 10, c.layers)} of {c.layers}")
        p = f"model.layers.{i}"
        h = _rms_norm(g, x, ckpt.get(f"{p}.input_layernorm.weight"), c.rms_eps, f"l{i}.attn_norm")
        # One MatMul for q, k, v; the 1/sqrt(head_dim) score scale is folded into q (rotary is linear).
        weights = [ckpt.get(f"{p}.self_attn.q_proj.weight") * scale, ckpt.get(f"{p}.self_attn.k_proj.weight"),
                   ckpt.get(f"{p}.self_attn.v_proj.weight")]
        biases = [_optional(ckpt, f"{p}.self_attn.{n}_proj.bias") for n in "qkv"]
        bias = None
        if any(b is not None for b in biases):
            parts = [b if b is not None else np.zeros(w.shape[0], np.float32) for b, w in zip(biases, weights)]
            parts[0] = parts[0] * scale
            bias = np.concatenate(parts)
        qkv = g.linear(h, np.concatenate(weights, axis=0).T, bias, f"l{i}.qkv")
        context, keys, values = attention(qkv, i)
        presents.append((keys, values))
        attn = g.linear(context, ckpt.get(f"{p}.self_attn.o_proj.weight").T,
                        _optional(ckpt, f"{p}.self_attn.o_proj.bias"), f"l{i}.o_proj")
        x = g.op("Add", [x, attn], f"l{i}.attn_residual")

        h = _rms_norm(g, x, ckpt.get(f"{p}.post_attention_layernorm.weight"), c.rms_eps, f"l{i}.ffn_norm")
        gate_up_bias = None
        gate_bias, up_bias = _optional(ckpt, f"{p}.mlp.gate_proj.bias"), _optional(ckpt, f"{p}.mlp.up_proj.bias")
        if gate_bias is not None and up_bias is not None:
            gate_up_bias = np.concatenate([gate_bias, up_bias])
        gate_up = g.linear(h, np.concatenate([ckpt.get(f"{p}.mlp.gate_proj.weight"),
                                              ckpt.get(f"{p}.mlp.up_proj.weight")], axis=0).T,
                           gate_up_bias, f"l{i}.gate_up")
        gate, up = g.ops("Split", [gate_up, g.const([c.ffn, c.ffn])], f"l{i}.gate_up_split", outputs=2, axis=2)
        silu = g.op("Mul", [gate, g.op("Sigmoid", [gate], f"l{i}.sigmoid")], f"l{i}.silu")
        down = g.linear(g.op("Mul", [silu, up], f"l{i}.swiglu"), ckpt.get(f"{p}.mlp.down_proj.weight").T,
                        _optional(ckpt, f"{p}.mlp.down_proj.bias"), f"l{i}.down")
        x = g.op("Add", [x, down], f"l{i}.ffn_residual")

    # Final norm and lm_head on the last position only.
    last = g.op("Gather", [x, g.const(-1)], "last_hidden", axis=1)
    last = _rms_norm(g, last, ckpt.get("model.norm.weight"), c.rms_eps, "final_norm")
    g.named_op("MatMul", [last, g.weight(np.ascontiguousarray(ckpt.lm_head().T), "lm_head.weight_t")], "logits")
    g.output("logits", "logits", FLOAT, ["batch", c.vocab])
    # With GroupQueryAttention, "past_seq" and "total_seq" are both the buffer's capacity when present.* is
    # bound to the past_key_values.* buffer.
    for i, (keys, values) in enumerate(presents):
        g.output(keys, f"present.{i}.key", FLOAT, ["batch", kv, "total_seq", hd])
        g.output(values, f"present.{i}.value", FLOAT, ["batch", kv, "total_seq", hd])
    attention_kind = "GroupQueryAttention, KV cache updated in place" if gqa else "explicit attention"
    return g.model(doc=f"{c.architecture} decoder, {c.layers} layers, hidden {c.hidden}, {attention_kind}: "
                       "next-token logits of the last position + KV cache")


EMBED_BLOCK = 32  # the block of llama.cpp's Q8_0


def int8_blocks(table: np.ndarray, block: int = EMBED_BLOCK) -> tuple[np.ndarray, np.ndarray] | None:
    """``table`` [rows, cols] as int8 values and one float32 scale per block of ``block`` columns, when
    that is *exact* (``q * scale == table`` in float32): true of a table dequantised from Q8_0 (scale =
    the block's max |value| / 127). None otherwise."""
    rows, cols = table.shape
    if cols % block:
        return None
    blocks = table.reshape(rows, cols // block, block)
    scale = (np.abs(blocks).max(axis=2, keepdims=True) / np.float32(127)).astype(np.float32)
    safe = np.where(scale == 0, np.float32(1), scale)
    q = np.rint(blocks / safe)
    if np.abs(q).max(initial=0) > 127 or not np.array_equal((q * scale).astype(np.float32), blocks):
        return None
    return q.astype(np.int8).reshape(rows, cols), scale.reshape(rows, cols // block)


def build_embed(ckpt: DecoderCheckpoint) -> onnx.ModelProto:
    """Token embeddings. A table dequantised from Q8_0 (SmolLM2's GGUF) is stored as its int8 values and
    block scales and expanded per lookup, exactly: a quarter of the float32 table's memory."""
    g = GraphBuilder("embed")
    ids = g.input("input_ids", INT64, ["batch", "seq"])
    table = ckpt.get("model.embed_tokens.weight")
    hidden = ckpt.config.hidden
    compact = int8_blocks(table)
    if compact is None:
        rows = g.named_op("Gather", [g.weight(table, "embed_tokens"), ids], "inputs_embeds")
    else:
        values, scales = compact
        gathered = g.op("Cast", [g.op("Gather", [g.weight(values, "embed_tokens_int8"), ids], "rows_int8")],
                        "rows_float", to=onnx.TensorProto.FLOAT)
        blocks = g.op("Reshape", [gathered, g.const([0, 0, hidden // EMBED_BLOCK, EMBED_BLOCK])], "rows_blocks")
        row_scales = g.op("Unsqueeze", [g.op("Gather", [g.weight(scales, "embed_tokens_scales"), ids], "scales"),
                                        g.const([-1])], "scales4")
        scaled = g.op("Mul", [blocks, row_scales], "rows_scaled")
        rows = g.named_op("Reshape", [scaled, g.const([0, 0, hidden])], "inputs_embeds")
    g.output(rows, "inputs_embeds", FLOAT, ["batch", "seq", hidden])
    return g.model(doc="decoder token embeddings")
