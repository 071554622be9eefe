"""encoder.onnx (ONNX Runtime, float32) against the NumPy float64 reference, and golden.json."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

from e2llm_offline.export import GOLDEN_SENTENCES
from e2llm_offline.reference import ReferenceEncoder
from helpers import pad_batch

EXTRA_SENTENCES = [
    "A",
    "!!!",
    "1234567890 0987654321",
    "Ελληνικά και Ἀρχαῖα",
    "한국어 문장입니다.",
    "She sells sea shells by the sea shore; the shells she sells are sea shells, I'm sure.",
]


def _tokenizer(models_dir: Path) -> Tokenizer:
    return Tokenizer.from_file(str(models_dir / "encoder_tokenizer.json"))


def test_tokenizer_has_no_padding_or_truncation(models_dir: Path) -> None:
    data = json.loads((models_dir / "encoder_tokenizer.json").read_text())
    assert data["padding"] is None and data["truncation"] is None
    long_ids = _tokenizer(models_dir).encode("word " * 300).ids
    assert len(long_ids) == 302 and long_ids[0] == 101 and long_ids[-1] == 102  # [CLS] ... [SEP]


def test_onnx_matches_reference_in_padded_batches(models_dir: Path, encoder_session: ort.InferenceSession,
                                                  reference_encoder: ReferenceEncoder) -> None:
    tokenizer = _tokenizer(models_dir)
    texts = GOLDEN_SENTENCES + EXTRA_SENTENCES
    assert len(texts) >= 20
    rows = [tokenizer.encode(t).ids for t in texts]
    cosines, diffs = [], []
    # Batches of 7 mixing short and long rows: padding must not leak into the pooled vectors.
    for start in range(0, len(rows), 7):
        batch = rows[start:start + 7]
        ids, mask = pad_batch(batch)
        (vectors,) = encoder_session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})
        assert vectors.shape == (len(batch), 384) and vectors.dtype == np.float32
        for row, vector in zip(batch, vectors):
            expected = reference_encoder.embed(row)
            cosines.append(float(vector @ expected / np.linalg.norm(vector)))
            diffs.append(float(np.abs(vector - expected).max()))
            assert abs(np.linalg.norm(vector) - 1.0) < 1e-5
    print(f"\nencoder: min cosine {min(cosines):.9f}, max abs diff {max(diffs):.2e} over {len(rows)} texts")
    assert min(cosines) >= 0.999
    # float32 through 6 layers: observed ~1e-7; 1e-5 still leaves the Rust golden test (1e-4) headroom.
    assert max(diffs) < 1e-5


def test_single_row_equals_row_in_batch(encoder_session: ort.InferenceSession, models_dir: Path) -> None:
    tokenizer = _tokenizer(models_dir)
    rows = [tokenizer.encode(t).ids for t in ("short", GOLDEN_SENTENCES[-1], "a medium length sentence here")]
    ids, mask = pad_batch(rows)
    (together,) = encoder_session.run(None, {"input_ids": ids, "attention_mask": mask})
    for i, row in enumerate(rows):
        (alone,) = encoder_session.run(None, {"input_ids": np.array([row]), "attention_mask": np.ones((1, len(row)),
                                                                                                       np.int64)})
        assert np.abs(alone[0] - together[i]).max() < 1e-5


def test_golden_matches_onnx(golden: dict, models_dir: Path, encoder_session: ort.InferenceSession) -> None:
    cases = golden["encoder"]
    assert len(cases) >= 20
    tokenizer = _tokenizer(models_dir)
    for case in cases:
        assert tokenizer.encode(case["text"]).ids == case["input_ids"]
        ids = np.array([case["input_ids"]], np.int64)
        (vector,) = encoder_session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids)})
        expected = np.array(case["embedding"])
        assert float(vector[0] @ expected) > 0.9999
        assert np.abs(vector[0] - expected).max() < 1e-5
    assert any(len(c["input_ids"]) > 128 for c in cases), "the golden set needs a long text"
