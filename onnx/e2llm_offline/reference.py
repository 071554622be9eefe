"""Independent NumPy forward passes, written from the architectures (not from the ONNX graph code).

They compute in float64 (weights are float32 values, activations float64), one sequence or batch at
a time with explicit loops where that is clearer, and serve as the ground truth for golden.json and
the parity tests.

* :class:`ReferenceEncoder` -- BERT + masked mean pooling + L2 norm, each text on its own, no padding.
* :class:`ReferenceDecoder` -- llama/qwen2 with RMSNorm, rotary (either rotate-half or llama.cpp's
  adjacent-pair layout), grouped-query attention by repeating KV heads, SwiGLU; KV cache; greedy.
* :func:`adapter_forward` -- fc2(gelu(fc1(x))).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file

from .decoder import DecoderCheckpoint

_erf = np.frompyfunc(math.erf, 1, 1)


def gelu(x: np.ndarray) -> np.ndarray:
    """Exact GELU, x · Φ(x), with math.erf (float64)."""
    return 0.5 * x * (1.0 + _erf(x / math.sqrt(2.0)).astype(np.float64))


def _softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max(axis=-1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------------------------------
# Encoder


class ReferenceEncoder:
    def __init__(self, model_dir: Path) -> None:
        model_dir = Path(model_dir)
        self.config = json.loads((model_dir / "config.json").read_text())
        weights = load_file(str(model_dir / "model.safetensors"))
        prefix = "bert." if "bert.embeddings.word_embeddings.weight" in weights else ""
        self.w = {k[len(prefix):]: v for k, v in weights.items() if k.startswith(prefix)}

    def _layer_norm(self, x: np.ndarray, name: str) -> np.ndarray:
        mean = x.mean(axis=-1, keepdims=True)
        var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
        eps = self.config["layer_norm_eps"]
        return (x - mean) / np.sqrt(var + eps) * self.w[f"{name}.weight"] + self.w[f"{name}.bias"]

    def _dense(self, x: np.ndarray, name: str) -> np.ndarray:
        return x @ self.w[f"{name}.weight"].T.astype(np.float64) + self.w[f"{name}.bias"]

    def hidden_states(self, ids: list[int]) -> np.ndarray:
        """Last hidden state [seq, hidden] of one unpadded sequence."""
        n = len(ids)
        heads = self.config["num_attention_heads"]
        x = (self.w["embeddings.word_embeddings.weight"][ids].astype(np.float64)
             + self.w["embeddings.position_embeddings.weight"][:n]
             + self.w["embeddings.token_type_embeddings.weight"][0])
        x = self._layer_norm(x, "embeddings.LayerNorm")
        for i in range(self.config["num_hidden_layers"]):
            p = f"encoder.layer.{i}"
            q = self._dense(x, f"{p}.attention.self.query")
            k = self._dense(x, f"{p}.attention.self.key")
            v = self._dense(x, f"{p}.attention.self.value")
            d = q.shape[1] // heads
            context = np.empty_like(q)
            for h in range(heads):
                cols = slice(h * d, (h + 1) * d)
                probs = _softmax(q[:, cols] @ k[:, cols].T / math.sqrt(d))
                context[:, cols] = probs @ v[:, cols]
            x = self._layer_norm(x + self._dense(context, f"{p}.attention.output.dense"),
                                 f"{p}.attention.output.LayerNorm")
            inner = gelu(self._dense(x, f"{p}.intermediate.dense"))
            x = self._layer_norm(x + self._dense(inner, f"{p}.output.dense"), f"{p}.output.LayerNorm")
        return x

    def embed(self, ids: list[int]) -> np.ndarray:
        """Mean over all tokens (there is no padding here), L2-normalised: [hidden] float64."""
        pooled = self.hidden_states(ids).mean(axis=0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)


# --------------------------------------------------------------------------------------------------
# Decoder


def _inv_freq(checkpoint: DecoderCheckpoint) -> np.ndarray:
    c = checkpoint.config
    freqs = np.array([c.rope_theta ** (-2.0 * i / c.head_dim) for i in range(c.head_dim // 2)])
    scaling = c.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "linear":
        freqs = freqs / scaling["factor"]
    elif kind == "llama3":
        factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
        original = scaling["original_max_position_embeddings"]
        out = []
        for f in freqs:
            wavelength = 2 * math.pi / f
            if wavelength < original / high:
                out.append(f)
            elif wavelength > original / low:
                out.append(f / factor)
            else:
                smooth = (original / wavelength - low) / (high - low)
                out.append((1 - smooth) * f / factor + smooth * f)
        freqs = np.array(out)
    elif kind != "default":
        raise NotImplementedError(kind)
    return freqs


class ReferenceDecoder:
    """A llama/qwen2 decoder on NumPy. ``rope_layout`` of the checkpoint decides the rotary pairing:
    "half" pairs dims i and i + d/2 (Hugging Face), "interleaved" pairs 2i and 2i + 1 (llama.cpp)."""

    def __init__(self, checkpoint: DecoderCheckpoint) -> None:
        self.ckpt = checkpoint
        self.c = checkpoint.config
        self.inv_freq = _inv_freq(checkpoint)
        self.w: dict[str, np.ndarray] = {}
        names = ["model.embed_tokens.weight", "model.norm.weight"]
        if not self.c.tied_embeddings:
            names.append("lm_head.weight")
        for i in range(self.c.layers):
            for part in ("input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                         "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                         "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias",
                         "self_attn.o_proj.bias", "mlp.gate_proj.weight", "mlp.up_proj.weight",
                         "mlp.down_proj.weight", "mlp.gate_proj.bias", "mlp.up_proj.bias", "mlp.down_proj.bias"):
                names.append(f"model.layers.{i}.{part}")
        for name in names:
            if checkpoint.has(name):
                self.w[name] = checkpoint.get(name)
        head = self.w["model.embed_tokens.weight"] if self.c.tied_embeddings else self.w["lm_head.weight"]
        self.lm_head = head

    def _linear(self, x: np.ndarray, name: str) -> np.ndarray:
        y = x @ self.w[f"{name}.weight"].T
        bias = self.w.get(f"{name}.bias")
        return y if bias is None else y + bias

    def _rms(self, x: np.ndarray, name: str) -> np.ndarray:
        return x / np.sqrt((x * x).mean(axis=-1, keepdims=True) + self.c.rms_eps) * self.w[name]

    def _rotate(self, x: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """x [b, heads, s, d], positions [b, s]."""
        angle = positions[:, None, :, None].astype(np.float64) * self.inv_freq  # [b, 1, s, d/2]
        cos, sin = np.cos(angle), np.sin(angle)
        d = x.shape[-1]
        if self.ckpt.rope_layout == "half":
            a, b = x[..., : d // 2], x[..., d // 2:]
            return np.concatenate([a * cos - b * sin, b * cos + a * sin], axis=-1)
        a, b = x[..., 0::2], x[..., 1::2]
        out = np.empty_like(x)
        out[..., 0::2] = a * cos - b * sin
        out[..., 1::2] = b * cos + a * sin
        return out

    def embed(self, ids: list[int] | np.ndarray) -> np.ndarray:
        return self.w["model.embed_tokens.weight"][np.asarray(ids)].astype(np.float64)

    def forward(self, embeds: np.ndarray, attention_mask: np.ndarray, position_ids: np.ndarray,
                cache: list[tuple[np.ndarray, np.ndarray]] | None = None, all_logits: bool = False,
                ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
        """embeds [b, s, hidden]; attention_mask [b, past + s]; position_ids [b, s]; cache per layer
        (key, value) [b, kv, past, d]. Returns logits of the last position [b, vocab] (or of every
        position [b, s, vocab]) and the extended cache."""
        c = self.c
        x = np.asarray(embeds, dtype=np.float64)
        b, s, _ = x.shape
        past = 0 if cache is None else cache[0][0].shape[2]
        total = past + s
        assert attention_mask.shape == (b, total), (attention_mask.shape, (b, total))
        allowed = np.zeros((b, 1, s, total), dtype=bool)
        for row in range(b):
            for t in range(s):
                allowed[row, 0, t, : past + t + 1] = attention_mask[row, : past + t + 1] == 1
        rep = c.heads // c.kv_heads
        new_cache = []
        for i in range(c.layers):
            p = f"model.layers.{i}"
            h = self._rms(x, f"{p}.input_layernorm.weight")
            q = self._linear(h, f"{p}.self_attn.q_proj").reshape(b, s, c.heads, c.head_dim).transpose(0, 2, 1, 3)
            k = self._linear(h, f"{p}.self_attn.k_proj").reshape(b, s, c.kv_heads, c.head_dim).transpose(0, 2, 1, 3)
            v = self._linear(h, f"{p}.self_attn.v_proj").reshape(b, s, c.kv_heads, c.head_dim).transpose(0, 2, 1, 3)
            q, k = self._rotate(q, position_ids), self._rotate(k, position_ids)
            if cache is not None:
                k = np.concatenate([cache[i][0], k], axis=2)
                v = np.concatenate([cache[i][1], v], axis=2)
            new_cache.append((k, v))
            k_full, v_full = np.repeat(k, rep, axis=1), np.repeat(v, rep, axis=1)
            scores = q @ k_full.transpose(0, 1, 3, 2) / math.sqrt(c.head_dim)
            scores = np.where(allowed, scores, -np.inf)
            row_max = scores.max(axis=-1, keepdims=True)
            row_max = np.where(np.isfinite(row_max), row_max, 0.0)
            e = np.where(allowed, np.exp(scores - row_max), 0.0)
            denom = e.sum(axis=-1, keepdims=True)
            probs = e / np.where(denom > 0, denom, 1.0)  # rows with no visible key (padding) give zeros
            context = (probs @ v_full).transpose(0, 2, 1, 3).reshape(b, s, c.heads * c.head_dim)
            x = x + self._linear(context, f"{p}.self_attn.o_proj")
            h = self._rms(x, f"{p}.post_attention_layernorm.weight")
            gate = self._linear(h, f"{p}.mlp.gate_proj")
            act = gate / (1.0 + np.exp(-gate)) * self._linear(h, f"{p}.mlp.up_proj")
            x = x + self._linear(act, f"{p}.mlp.down_proj")
        if not all_logits:
            x = x[:, -1]
        return self._rms(x, "model.norm.weight") @ self.lm_head.T, new_cache

    def greedy(self, prompt_ids: list[int], max_new_tokens: int, eos_ids: list[int] | tuple[int, ...] = (),
               ) -> tuple[list[int], float]:
        """Greedy continuation (stops after emitting an eos id, which is included). Also returns the
        smallest gap between the best and second-best logits over the steps (how robust the argmax is)."""
        ids = list(prompt_ids)
        n = len(ids)
        logits, cache = self.forward(self.embed(ids)[None], np.ones((1, n), np.int64), np.arange(n)[None])
        out: list[int] = []
        margin = math.inf
        while True:
            top2 = np.sort(logits[0])[-2:]
            margin = min(margin, float(top2[1] - top2[0]))
            token = int(np.argmax(logits[0]))
            out.append(token)
            if token in eos_ids or len(out) == max_new_tokens:
                return out, margin
            position = n + len(out) - 1
            logits, cache = self.forward(self.embed([token])[None], np.ones((1, position + 1), np.int64),
                                         np.array([[position]]), cache)


# --------------------------------------------------------------------------------------------------
# Adapter


def adapter_forward(weights: dict[str, np.ndarray], vectors: np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype=np.float64)
    hidden = gelu(x @ weights["fc1.weight"].T.astype(np.float64) + weights["fc1.bias"])
    return hidden @ weights["fc2.weight"].T.astype(np.float64) + weights["fc2.bias"]
