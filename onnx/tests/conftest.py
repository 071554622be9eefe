"""Shared fixtures. Full-size model tests use ``models/default`` when a complete export is there
(its manifest is written last) and E2LLM_TEST_FRESH_EXPORT is unset, else they export into a
session-scoped temporary directory. A missing model package is a test failure with instructions,
never a skip."""

from __future__ import annotations

import json
import os
from pathlib import Path

import onnxruntime as ort
import pytest

from e2llm_offline.common import MissingModelPackage, default_decoder_gguf, default_encoder_dir, sha256_file
from e2llm_offline.decoder import load_gguf, load_lora, with_lora
from e2llm_offline.export import DEFAULT_PROMPT, export
from e2llm_offline.reference import ReferenceDecoder, ReferenceEncoder
from helpers import session

PROJECT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def encoder_dir() -> Path:
    try:
        return default_encoder_dir()
    except MissingModelPackage as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def decoder_gguf() -> Path:
    try:
        return default_decoder_gguf()
    except MissingModelPackage as error:
        pytest.fail(str(error))


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory, encoder_dir: Path, decoder_gguf: Path) -> Path:
    existing = PROJECT / "models" / "default"
    if (existing / "manifest.json").is_file() and not os.environ.get("E2LLM_TEST_FRESH_EXPORT"):
        return existing
    out = tmp_path_factory.mktemp("models") / "default"
    export(out, None, None, None, None, DEFAULT_PROMPT)
    return out


@pytest.fixture(scope="session")
def manifest(models_dir: Path) -> dict:
    return json.loads((models_dir / "manifest.json").read_text())


@pytest.fixture(scope="session")
def golden(models_dir: Path) -> dict:
    return json.loads((models_dir / "golden.json").read_text())


@pytest.fixture(scope="session")
def reference_encoder(encoder_dir: Path) -> ReferenceEncoder:
    return ReferenceEncoder(encoder_dir)


@pytest.fixture(scope="session")
def reference_decoder(decoder_gguf: Path, manifest: dict) -> ReferenceDecoder:
    # llama.cpp's own rotary layout (Q/K rows as stored in the GGUF): checks the graph's un-permutation.
    # With the LoRA the export merged (onnx/adapter/, the same file by its sha256), as decoder.onnx has it.
    ckpt = load_gguf(decoder_gguf, unpermute=False)
    lora = manifest["decoder"].get("lora")
    if lora:
        path = PROJECT / "onnx" / "adapter" / lora["file"]
        assert sha256_file(path) == lora["sha256"], f"{path} is not the LoRA in the models: re-run `make setup`"
        ckpt = with_lora(ckpt, load_lora(path)[0])
    return ReferenceDecoder(ckpt)


@pytest.fixture(scope="session")
def encoder_session(models_dir: Path) -> ort.InferenceSession:
    return session(models_dir / "encoder.onnx")


@pytest.fixture(scope="session")
def decoder_session(models_dir: Path) -> ort.InferenceSession:
    return session(models_dir / "decoder.onnx")


@pytest.fixture(scope="session")
def embed_session(models_dir: Path) -> ort.InferenceSession:
    return session(models_dir / "embed.onnx")
