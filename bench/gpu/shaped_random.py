"""Random-weight checkpoints with the exact shapes of the default models, for timing on a machine the
real weights cannot reach (the device machine has no network and a call carries 64 MiB).

Speed does not depend on weight values, so CPU-vs-CUDA timings on these checkpoints are timings of
the real graphs; the answers they produce are meaningless and are only compared between providers.

Here (where the real models are):
    PYTHONPATH=onnx .venv/bin/python bench/gpu/shaped_random.py like --out .gpu/like
There (writes checkpoints that e2llm_offline.export reads, plus an adapter for both):
    PYTHONPATH=onnx python3 bench/gpu/shaped_random.py random --like .gpu/like --out /tmp/ckpt
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import numpy as np
from safetensors import safe_open
from safetensors.numpy import save_file

from e2llm_offline.common import sha256_of


def write_like(out: Path) -> None:
    """Shapes and configs (no weights) of the default encoder and decoder."""
    from e2llm_offline.common import default_decoder_gguf, default_encoder_dir
    from e2llm_offline.decoder import load_gguf

    encoder_dir = default_encoder_dir()
    (out / "encoder").mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "1_Pooling/config.json"):
        if (encoder_dir / name).is_file():
            (out / "encoder" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(encoder_dir / name, out / "encoder" / name)
    shapes = {}
    for path in sorted(encoder_dir.glob("*.safetensors")):
        with safe_open(str(path), "np") as handle:
            for key in handle.keys():
                shapes[key] = list(handle.get_slice(key).get_shape())
    (out / "encoder" / "shapes.json").write_text(json.dumps(shapes))

    gguf = default_decoder_gguf()
    ckpt = load_gguf(gguf)
    c = ckpt.config
    config = {"model_type": "llama", "hidden_size": c.hidden, "num_hidden_layers": c.layers,
              "num_attention_heads": c.heads, "num_key_value_heads": c.kv_heads, "head_dim": c.head_dim,
              "intermediate_size": c.ffn, "vocab_size": c.vocab, "rms_norm_eps": c.rms_eps,
              "rope_theta": c.rope_theta, "max_position_embeddings": c.context_length, "hidden_act": "silu",
              "tie_word_embeddings": c.tied_embeddings, "eos_token_id": ckpt.eos_token_ids}
    (out / "decoder").mkdir(parents=True, exist_ok=True)
    (out / "decoder" / "config.json").write_text(json.dumps(config, indent=1))
    from e2llm_offline.tokenizer import decoder_tokenizer_json_from_gguf

    (out / "decoder" / "tokenizer.json").write_text(decoder_tokenizer_json_from_gguf(gguf), encoding="utf-8")
    print(f"wrote {out}: encoder {len(shapes)} tensors, decoder {config}")


def write_random(like: Path, out: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)

    def matrix(shape: list[int]) -> np.ndarray:
        return (rng.standard_normal(shape, dtype=np.float32) / np.sqrt(shape[-1])).astype(np.float32)

    # Encoder: every tensor of the real checkpoint, same name and shape.
    enc = out / "encoder"
    shutil.copytree(like / "encoder", enc, dirs_exist_ok=True)
    shapes = json.loads((enc / "shapes.json").read_text())
    (enc / "shapes.json").unlink()
    tensors = {}
    for name, shape in shapes.items():
        if name.endswith("LayerNorm.weight"):
            tensors[name] = np.ones(shape, np.float32)
        elif name.endswith("bias") or "position_ids" in name:
            tensors[name] = np.zeros(shape, np.float32) if "position_ids" not in name else np.arange(
                shape[-1], dtype=np.int64).reshape(shape)
        elif "embeddings" in name:
            tensors[name] = (0.05 * rng.standard_normal(shape, dtype=np.float32)).astype(np.float32)
        else:
            tensors[name] = matrix(shape)
    save_file(tensors, str(enc / "model.safetensors"))

    # Decoder: a llama checkpoint in Hugging Face layout with the real config.
    dec = out / "decoder"
    shutil.copytree(like / "decoder", dec, dirs_exist_ok=True)
    c = json.loads((dec / "config.json").read_text())
    hidden, ffn, heads, kv, hd = (c["hidden_size"], c["intermediate_size"], c["num_attention_heads"],
                                  c["num_key_value_heads"], c["head_dim"])
    w = {"model.embed_tokens.weight": (0.05 * rng.standard_normal((c["vocab_size"], hidden), dtype=np.float32)),
         "model.norm.weight": np.ones(hidden, np.float32)}
    if not c["tie_word_embeddings"]:
        w["lm_head.weight"] = matrix([c["vocab_size"], hidden])
    for i in range(c["num_hidden_layers"]):
        p = f"model.layers.{i}"
        w[f"{p}.input_layernorm.weight"] = np.ones(hidden, np.float32)
        w[f"{p}.post_attention_layernorm.weight"] = np.ones(hidden, np.float32)
        w[f"{p}.self_attn.q_proj.weight"] = matrix([heads * hd, hidden])
        w[f"{p}.self_attn.k_proj.weight"] = matrix([kv * hd, hidden])
        w[f"{p}.self_attn.v_proj.weight"] = matrix([kv * hd, hidden])
        w[f"{p}.self_attn.o_proj.weight"] = matrix([hidden, heads * hd])
        w[f"{p}.mlp.gate_proj.weight"] = matrix([ffn, hidden])
        w[f"{p}.mlp.up_proj.weight"] = matrix([ffn, hidden])
        w[f"{p}.mlp.down_proj.weight"] = matrix([hidden, ffn])
    save_file(w, str(dec / "model.safetensors"))

    # Adapter for both, with the fingerprints export computes (so adapter.onnx is written).
    encoder_dim = shapes["embeddings.word_embeddings.weight"][1] if "embeddings.word_embeddings.weight" in shapes \
        else shapes["bert.embeddings.word_embeddings.weight"][1]
    encoder_fp = sha256_of(sorted(enc.glob("*.safetensors")) + [enc / "tokenizer.json"], [b"pooling=mean;normalize=l2"])
    decoder_fp = sha256_of(sorted(dec.glob("*.safetensors")) + [dec / "tokenizer.json"])
    adapter = {"fc1.weight": matrix([hidden, encoder_dim]), "fc1.bias": np.zeros(hidden, np.float32),
               "fc2.weight": matrix([hidden, hidden]), "fc2.bias": np.zeros(hidden, np.float32)}
    save_file(adapter, str(out / "adapter.safetensors"),
              metadata={"encoder_fingerprint": encoder_fp, "decoder_fingerprint": decoder_fp,
                        "source": "random weights for timing (bench/gpu/shaped_random.py)"})
    print(f"wrote random checkpoints into {out}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    like = sub.add_parser("like")
    like.add_argument("--out", type=Path, required=True)
    rand = sub.add_parser("random")
    rand.add_argument("--like", type=Path, required=True)
    rand.add_argument("--out", type=Path, required=True)
    rand.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.command == "like":
        write_like(args.out)
    else:
        write_random(args.like, args.out, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
