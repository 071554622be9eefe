"""How closely a decoder variant follows the float32 decoder, token by token (teacher forcing).

For each of N passages of the example corpus (State of the Union addresses): prefill the first
PREFIX tokens, then feed the next STEPS tokens one at a time through the KV cache, the way `ask`
decodes. At every step compare the variant's next-token distribution with float32's: top-1
agreement, mean KL(fp32 || variant), and the variant's perplexity on the true next tokens. Cheap
(minutes), so it picks among quantisation recipes before the slower answer-quality run
(bench/compare_adapters.py with `--flags " --precision quantized" ""`).

    .venv/bin/python bench/decoder_fidelity.py --models models/dev --variants decoder.quantized.onnx \
        [--passages 12] [--prefix 256] [--steps 48] [--threads 2] [--out reports/decoder_fidelity.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
from tokenizers import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


def passages(tokenizer: Tokenizer, count: int, length: int) -> list[list[int]]:
    """`count` runs of `length` token ids, one from each of the first `count` example documents."""
    files = sorted((ROOT / "examples" / "sotu").glob("*.txt"))
    step = max(1, len(files) // count)
    out = []
    for path in files[::step][:count]:
        ids = tokenizer.encode(path.read_text(), add_special_tokens=False).ids
        if len(ids) >= length:
            out.append(ids[len(ids) // 3: len(ids) // 3 + length])
    return out


class Decoder:
    def __init__(self, path: Path, embed: ort.InferenceSession, threads: int):
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.embed = embed
        self.kv_names = [i.name for i in self.session.get_inputs() if i.name.startswith("past_key_values")]
        self.kv_shape = {i.name: i.shape for i in self.session.get_inputs()}

    def run(self, ids: list[int], past: dict | None, start: int) -> tuple[np.ndarray, dict]:
        embeds = self.embed.run(None, {"input_ids": np.array([ids], dtype=np.int64)})[0]
        if past is None:
            past = {n: np.zeros((1, self.kv_shape[n][1], 0, self.kv_shape[n][3]), np.float32) for n in self.kv_names}
        total = start + len(ids)
        feeds = {"inputs_embeds": embeds, "position_ids": np.arange(start, total, dtype=np.int64)[None], **past}
        if "seqlens_k" in self.kv_shape:  # GroupQueryAttention (decoder.onnx), here with past + new caches
            feeds.update(seqlens_k=np.array([total - 1], np.int32), total_sequence_length=np.array(total, np.int32))
        else:
            feeds["attention_mask"] = np.ones((1, total), np.int64)
        outputs = self.session.run(None, feeds)
        present = dict(zip(self.kv_names, outputs[1:]))
        return outputs[0][0], present

    def trace(self, ids: list[int], prefix: int) -> tuple[list[np.ndarray], float, list[float]]:
        """Log-probabilities after the prefix and after each following token; prefill seconds and per-step
        seconds."""
        began = time.perf_counter()
        logits, past = self.run(ids[:prefix], None, 0)
        prefill = time.perf_counter() - began
        out, steps = [log_softmax(logits)], []
        for i in range(prefix, len(ids) - 1):
            began = time.perf_counter()
            logits, past = self.run([ids[i]], past, i)
            steps.append(time.perf_counter() - began)
            out.append(log_softmax(logits))
        return out, prefill, steps


def size(graph: Path) -> int:
    """Bytes of a graph file and of its external-data file, if any."""
    data = graph.with_name(graph.name + ".data")
    return graph.stat().st_size + (data.stat().st_size if data.exists() else 0)


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits.astype(np.float64) - logits.max()
    return shifted - np.log(np.exp(shifted).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "default")
    parser.add_argument("--variants", nargs="+", required=True, help="graph files in the models directory")
    parser.add_argument("--passages", type=int, default=12)
    parser.add_argument("--prefix", type=int, default=256)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    manifest = json.loads((args.models / "manifest.json").read_text())
    tokenizer = Tokenizer.from_file(str(args.models / manifest["decoder"]["tokenizer"]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    embed = ort.InferenceSession(str(args.models / manifest["decoder"]["embed_file"]), options,
                                 providers=["CPUExecutionProvider"])
    texts = passages(tokenizer, args.passages, args.prefix + args.steps + 1)
    reference = Decoder(args.models / manifest["decoder"]["file"], embed, args.threads)
    traces = [reference.trace(ids, args.prefix) for ids in texts]
    report = {"models": str(args.models), "passages": len(texts), "prefix": args.prefix, "steps": args.steps,
              "threads": args.threads, "variants": {}}
    for name in [manifest["decoder"]["file"], *args.variants]:
        decoder = reference if name == manifest["decoder"]["file"] else Decoder(args.models / name, embed, args.threads)
        agree, kl, nll, prefill, step = [], [], [], [], []
        for ids, (ref, _, _) in zip(texts, traces):
            got, seconds, steps = decoder.trace(ids, args.prefix)
            prefill.append(seconds)
            step.extend(steps)
            for j, (p, q) in enumerate(zip(ref, got)):
                agree.append(int(p.argmax() == q.argmax()))
                kl.append(float((np.exp(p) * (p - q)).sum()))
                nll.append(-float(q[ids[args.prefix + j]]))
        row = {"top1_agreement": float(np.mean(agree)), "mean_kl": float(np.mean(kl)),
               "perplexity": float(np.exp(np.mean(nll))), "prefill_tokens_per_s": args.prefix / float(np.median(prefill)),
               "decode_tokens_per_s": 1.0 / float(np.median(step)),
               "size_mb": size(args.models / name) / 1e6}
        report["variants"][name] = row
        print(name, json.dumps({k: round(v, 4) for k, v in row.items()}), flush=True)
    if args.out:
        args.out.write_text(json.dumps(report, indent=1) + "\n")


if __name__ == "__main__":
    main()
