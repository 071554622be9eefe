"""adapter.onnx from random weights against the NumPy reference, and the export's adapter gating."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from e2llm_offline.adapter import build_adapter, load_adapter_weights
from e2llm_offline.export import export_adapter
from e2llm_offline.graph import check
from e2llm_offline.reference import adapter_forward
from helpers import session, session_from_model

ENCODER_DIM, HIDDEN = 384, 576


def _random_weights(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "fc1.weight": (rng.standard_normal((HIDDEN, ENCODER_DIM)) / np.sqrt(ENCODER_DIM)).astype(np.float32),
        "fc1.bias": (0.1 * rng.standard_normal(HIDDEN)).astype(np.float32),
        "fc2.weight": (rng.standard_normal((HIDDEN, HIDDEN)) / np.sqrt(HIDDEN)).astype(np.float32),
        "fc2.bias": (0.1 * rng.standard_normal(HIDDEN)).astype(np.float32),
    }


def test_adapter_matches_reference(tmp_path: Path) -> None:
    weights = _random_weights()
    path = tmp_path / "adapter.safetensors"
    save_file(weights, str(path))
    loaded = load_adapter_weights(path, ENCODER_DIM, HIDDEN)
    model = build_adapter(loaded)
    check(model)
    sess = session_from_model(model)
    assert [i.name for i in sess.get_inputs()] == ["vectors"]
    assert [o.name for o in sess.get_outputs()] == ["soft_tokens"]
    vectors = np.random.default_rng(1).standard_normal((7, ENCODER_DIM)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    (soft,) = sess.run(None, {"vectors": vectors})
    expected = adapter_forward(weights, vectors)
    assert soft.shape == (7, HIDDEN)
    assert np.abs(soft - expected).max() < 1e-5


def test_adapter_shapes_are_checked(tmp_path: Path) -> None:
    weights = _random_weights()
    path = tmp_path / "adapter.safetensors"
    save_file(weights, str(path))
    with pytest.raises(ValueError, match="encoder dim"):
        load_adapter_weights(path, encoder_dim=768)
    weights["fc2.bias"] = weights["fc2.bias"][:10]
    save_file(weights, str(path))
    with pytest.raises(ValueError, match="fc2.bias"):
        load_adapter_weights(path)


def test_export_adapter_requires_matching_fingerprints(tmp_path: Path) -> None:
    weights = _random_weights()
    path = tmp_path / "adapter.safetensors"
    messages: list[str] = []
    save_file(weights, str(path), metadata={"encoder_fingerprint": "e" * 64, "decoder_fingerprint": "d" * 64,
                                            "source": "test run"})
    assert export_adapter(path, tmp_path, ENCODER_DIM, HIDDEN, "e" * 64, "x" * 64, messages.append) is None
    assert "WARNING" in messages[-1] and not (tmp_path / "adapter.onnx").exists()
    entry = export_adapter(path, tmp_path, ENCODER_DIM, HIDDEN, "e" * 64, "d" * 64, messages.append)
    assert entry == {"file": "adapter.onnx", "encoder_dim": ENCODER_DIM, "hidden": HIDDEN,
                     "encoder_fingerprint": "e" * 64, "decoder_fingerprint": "d" * 64, "source": "test run"}
    vectors = np.eye(ENCODER_DIM, dtype=np.float32)[:3]
    (soft,) = session(tmp_path / "adapter.onnx").run(None, {"vectors": vectors})
    assert np.abs(soft - adapter_forward(weights, vectors)).max() < 1e-5
