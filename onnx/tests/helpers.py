"""Helpers shared by the tests (ONNX Runtime sessions, decoder calls)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort


def session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def empty_cache(layers: int, batch: int, kv_heads: int, head_dim: int) -> list[np.ndarray]:
    return [np.zeros((batch, kv_heads, 0, head_dim), np.float32) for _ in range(2 * layers)]


def run_decoder(sess: ort.InferenceSession, embeds: np.ndarray, attention_mask: np.ndarray,
                position_ids: np.ndarray, cache: list[np.ndarray]) -> tuple[np.ndarray, list[np.ndarray]]:
    """One decoder graph call; ``cache`` is [key0, value0, key1, ...]. Returns logits and the new cache
    (past + new positions). The GroupQueryAttention graph (decoder.onnx) takes the lengths instead of a
    mask, so its mask must be all ones."""
    feeds = {"inputs_embeds": embeds.astype(np.float32), "position_ids": position_ids.astype(np.int64)}
    if "seqlens_k" in {i.name for i in sess.get_inputs()}:
        assert np.all(attention_mask == 1), "the GroupQueryAttention decoder takes no padding"
        batch, total = attention_mask.shape
        feeds["seqlens_k"] = np.full(batch, total - 1, np.int32)
        feeds["total_sequence_length"] = np.array(total, np.int32)
    else:
        feeds["attention_mask"] = attention_mask.astype(np.int64)
    for i in range(len(cache) // 2):
        feeds[f"past_key_values.{i}.key"] = cache[2 * i]
        feeds[f"past_key_values.{i}.value"] = cache[2 * i + 1]
    names = [o.name for o in sess.get_outputs()]
    outputs = dict(zip(names, sess.run(None, feeds)))
    new_cache = []
    for i in range(len(cache) // 2):
        new_cache += [outputs[f"present.{i}.key"], outputs[f"present.{i}.value"]]
    return outputs["logits"], new_cache


def session_from_model(model: onnx.ModelProto) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def pad_batch(rows: list[list[int]], left: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """ids and attention_mask [batch, longest], zero-padded on the right (or the left)."""
    longest = max(len(r) for r in rows)
    ids = np.zeros((len(rows), longest), np.int64)
    mask = np.zeros((len(rows), longest), np.int64)
    for i, row in enumerate(rows):
        span = slice(longest - len(row), longest) if left else slice(0, len(row))
        ids[i, span] = row
        mask[i, span] = 1
    return ids, mask
