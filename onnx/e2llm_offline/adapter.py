"""The adapter: one encoder vector → one soft token in the decoder's embedding space.

``soft_tokens = fc2(gelu(fc1(vectors)))`` with exact (erf) GELU; weights from a safetensors file in
torch Linear layout: ``fc1.weight [hidden, encoder_dim]``, ``fc1.bias [hidden]``, ``fc2.weight
[hidden, hidden]``, ``fc2.bias [hidden]``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from safetensors.numpy import load_file

from .graph import FLOAT, GraphBuilder

ADAPTER_KEYS = ("fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias")


def load_adapter_weights(path: Path, encoder_dim: int | None = None, hidden: int | None = None,
                         ) -> dict[str, np.ndarray]:
    """Loads and shape-checks the adapter weights (float32)."""
    raw = load_file(str(path))
    missing = [k for k in ADAPTER_KEYS if k not in raw]
    if missing:
        raise ValueError(f"{path}: missing tensors {missing}")
    w = {k: raw[k].astype(np.float32) for k in ADAPTER_KEYS}
    h, e = w["fc1.weight"].shape
    expected = {"fc1.weight": (h, e), "fc1.bias": (h,), "fc2.weight": (h, h), "fc2.bias": (h,)}
    for key, shape in expected.items():
        if w[key].shape != shape:
            raise ValueError(f"{path}: {key} has shape {w[key].shape}, expected {shape}")
    if encoder_dim is not None and e != encoder_dim:
        raise ValueError(f"{path}: adapter input dim {e} != encoder dim {encoder_dim}")
    if hidden is not None and h != hidden:
        raise ValueError(f"{path}: adapter output dim {h} != decoder hidden {hidden}")
    return w


def build_adapter(weights: dict[str, np.ndarray]) -> onnx.ModelProto:
    hidden, encoder_dim = weights["fc1.weight"].shape
    g = GraphBuilder("adapter")
    vectors = g.input("vectors", FLOAT, ["n", encoder_dim])
    inner = g.gelu_exact(g.linear(vectors, weights["fc1.weight"].T, weights["fc1.bias"], "fc1"), "gelu")
    out = g.linear(inner, weights["fc2.weight"].T, weights["fc2.bias"], "fc2")
    g.output(out, "soft_tokens", FLOAT, ["n", hidden])
    return g.model(doc=f"adapter: encoder vector [{encoder_dim}] -> soft token [{hidden}]")
