"""bench/rcc_ratios.py's models folders: links to the shipped files, a manifest whose RCC ratio and memory
fingerprint change (memory kept at another ratio must not pass for the shipped one), the shipped folder
itself at its own ratio, and a clear stop for models without an RCC encoder."""

import json
import sys

import pytest
from conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import rcc_ratios  # noqa: E402


def shipped(tmp_path, rcc=True):
    folder = tmp_path / "default"
    folder.mkdir(parents=True)
    (folder / "rcc_encoder.onnx").write_bytes(b"graph")
    manifest = {"name": "default", "rcc": {"ratio": 32, "fingerprint": "f" * 64}} if rcc else {"name": "default"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


def test_another_ratio_links_the_files_and_changes_ratio_and_fingerprint(tmp_path):
    folder = rcc_ratios.models_at_ratio(shipped(tmp_path), 8, tmp_path / "work")
    assert (folder / "rcc_encoder.onnx").is_symlink()
    assert (folder / "rcc_encoder.onnx").read_bytes() == b"graph"
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["rcc"]["ratio"] == 8
    assert manifest["rcc"]["fingerprint"] != "f" * 64
    again = rcc_ratios.models_at_ratio(shipped(tmp_path / "x"), 8, tmp_path / "work2")
    assert json.loads((again / "manifest.json").read_text())["rcc"]["fingerprint"] == manifest["rcc"]["fingerprint"]


def test_the_trained_ratio_is_the_shipped_folder(tmp_path):
    folder = shipped(tmp_path)
    assert rcc_ratios.models_at_ratio(folder, 32, tmp_path / "work") == folder


def test_models_without_rcc_are_refused(tmp_path):
    with pytest.raises(SystemExit, match="no RCC encoder"):
        rcc_ratios.models_at_ratio(shipped(tmp_path, rcc=False), 8, tmp_path / "work")
