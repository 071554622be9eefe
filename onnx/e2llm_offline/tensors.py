"""Reading safetensors checkpoints into float32 NumPy arrays without torch.

The ``safetensors`` NumPy API cannot return bfloat16 (NumPy has no such type), and most Hugging Face
decoder checkpoints are bfloat16, so the format is read directly: an 8-byte little-endian header
length, a JSON header mapping names to dtype/shape/byte offsets, then the raw little-endian data.
Files are memory-mapped; a tensor is only materialised (as float32) when asked for.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np

_RAW_DTYPES: dict[str, np.dtype] = {
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),
    "F64": np.dtype("<f8"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
}


class SafetensorsFile:
    """One ``.safetensors`` file, memory-mapped."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        with open(self.path, "rb") as handle:
            (header_len,) = struct.unpack("<Q", handle.read(8))
            header = json.loads(handle.read(header_len))
        header.pop("__metadata__", None)
        self._header: dict[str, dict] = header
        self._base = 8 + header_len
        self._map = np.memmap(self.path, dtype=np.uint8, mode="r")

    def keys(self) -> list[str]:
        return list(self._header)

    def __contains__(self, name: str) -> bool:
        return name in self._header

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._header[name]["shape"])

    def get(self, name: str) -> np.ndarray:
        """The tensor as float32 (floating types) or its own integer type."""
        entry = self._header[name]
        dtype_name = entry["dtype"]
        if dtype_name not in _RAW_DTYPES:
            raise ValueError(f"{self.path}: tensor {name} has unsupported dtype {dtype_name}")
        start, end = entry["data_offsets"]
        raw = self._map[self._base + start:self._base + end].view(_RAW_DTYPES[dtype_name])
        raw = raw.reshape(entry["shape"])
        if dtype_name == "BF16":
            return (raw.astype(np.uint32) << 16).view(np.float32)
        if dtype_name in ("F16", "F64"):
            return raw.astype(np.float32)
        return np.array(raw)  # copy out of the memory map


class SafetensorsCheckpoint:
    """All tensors of a checkpoint directory: ``model.safetensors`` or sharded files listed in
    ``model.safetensors.index.json`` (or any ``*.safetensors`` files present)."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        index = self.directory / "model.safetensors.index.json"
        if index.is_file():
            names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            paths = [self.directory / n for n in names]
        else:
            paths = sorted(self.directory.glob("*.safetensors"))
        if not paths:
            raise FileNotFoundError(f"no .safetensors files in {self.directory}")
        self.paths: list[Path] = paths
        self._where: dict[str, SafetensorsFile] = {}
        for path in paths:
            file = SafetensorsFile(path)
            for key in file.keys():
                self._where[key] = file

    def keys(self) -> list[str]:
        return list(self._where)

    def __contains__(self, name: str) -> bool:
        return name in self._where

    def shape(self, name: str) -> tuple[int, ...]:
        return self._where[name].shape(name)

    def get(self, name: str) -> np.ndarray:
        if name not in self._where:
            raise KeyError(f"tensor {name} not found in {self.directory}")
        return self._where[name].get(name)


def write_safetensors(path: Path, tensors: dict[str, np.ndarray],
                      bf16: set[str] | frozenset[str] = frozenset()) -> None:
    """Writes float32 tensors (those named in ``bf16`` rounded to bfloat16) to a safetensors file.
    Used by tests to make checkpoints in the layouts real ones use."""
    header: dict[str, dict] = {}
    blobs: list[bytes] = []
    offset = 0
    for name, array in tensors.items():
        array = np.ascontiguousarray(array, dtype=np.float32)
        if name in bf16:
            bits = array.view(np.uint32)
            rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16).astype("<u2")  # round to nearest even
            blob, dtype = rounded.tobytes(), "BF16"
        else:
            blob, dtype = array.astype("<f4").tobytes(), "F32"
        header[name] = {"dtype": dtype, "shape": list(array.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    header_bytes = json.dumps(header).encode("utf-8")
    header_bytes += b" " * (-len(header_bytes) % 8)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(header_bytes)))
        handle.write(header_bytes)
        for blob in blobs:
            handle.write(blob)
