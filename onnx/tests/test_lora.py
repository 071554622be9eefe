"""LoRA merge (`make setup` merges the trained LoRA into the exported decoder): deltas land on the
right weights in either rotary layout, a LoRA of another base decoder is not merged, and the merged
decoder gets its own fingerprint in the manifest."""

from __future__ import annotations

import numpy as np
import pytest
from safetensors.numpy import save_file

from e2llm_offline.common import lora_fingerprint
from e2llm_offline.decoder import load_gguf, load_lora, with_lora
from tiny import write_gguf

RANK = 2


def write_lora(path, weights: dict[str, np.ndarray], base: str, seed: int = 0) -> dict[str, np.ndarray]:
    """Random factors for every q/k/v/o and MLP weight; returns the full deltas (HF layout)."""
    rng = np.random.default_rng(seed)
    tensors, deltas = {}, {}
    for name, w in weights.items():
        if name.endswith(("_proj.weight",)) and name.startswith("model.layers."):
            a = rng.standard_normal((RANK, w.shape[1])).astype(np.float32)
            b = rng.standard_normal((w.shape[0], RANK)).astype(np.float32) * 0.1
            tensors[name[: -len(".weight")] + ".lora_a"] = a
            tensors[name[: -len(".weight")] + ".lora_b"] = b
            deltas[name] = b @ a
    save_file(tensors, str(path), metadata={"base_decoder_fingerprint": base, "rank": str(RANK), "alpha": "4",
                                            "targets": "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"})
    return deltas


def test_deltas_land_on_the_weights_in_both_rotary_layouts(tmp_path):
    weights = write_gguf(tmp_path / "tiny.gguf")
    expected = write_lora(tmp_path / "lora.safetensors", weights, "base")
    deltas, meta = load_lora(tmp_path / "lora.safetensors")
    assert meta["base_decoder_fingerprint"] == "base" and set(deltas) == set(expected)
    half = with_lora(load_gguf(tmp_path / "tiny.gguf"), deltas)
    interleaved = with_lora(load_gguf(tmp_path / "tiny.gguf", unpermute=False), deltas)
    plain_half = load_gguf(tmp_path / "tiny.gguf")
    plain_interleaved = load_gguf(tmp_path / "tiny.gguf", unpermute=False)
    for name, delta in expected.items():
        np.testing.assert_allclose(half.get(name), plain_half.get(name) + delta, rtol=1e-5, atol=1e-5)
        # The interleaved (GGUF) layout differs from the half layout only by the Q/K row order: the merged
        # weights must differ from the plain ones by the same permuted delta.
        moved = interleaved.get(name) - plain_interleaved.get(name)
        assert np.allclose(np.sort(moved, axis=0), np.sort(delta, axis=0), atol=1e-5), name
    norm = "model.norm.weight"
    np.testing.assert_array_equal(half.get(norm), plain_half.get(norm))


def test_lora_without_factors_is_refused(tmp_path):
    save_file({"x": np.zeros((2, 2), np.float32)}, str(tmp_path / "empty.safetensors"))
    with pytest.raises(ValueError, match="no LoRA tensors"):
        load_lora(tmp_path / "empty.safetensors")


def test_merged_fingerprint_depends_on_base_and_lora():
    a = lora_fingerprint("base", "1" * 64)
    assert a != lora_fingerprint("base", "2" * 64) and a != lora_fingerprint("other", "1" * 64)
    assert len(a) == 64
