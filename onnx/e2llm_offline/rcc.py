"""RCC (recurrent context compression, Huang et al. 2024) for e2llm: per-layer memory per chunk.

What the RCC encoder is here: a copy of the product's decoder (the exported one, LoRA merged) with its
own LoRA deltas. It reads one chunk (decoder tokens, at most MAX_SEGMENT_TOKENS) and keeps, from every
layer, the key (before rotary) and the value of every `ratio`-th token and of the last one:
ceil(n / ratio) memory slots per chunk. At answer time the slots of the chosen chunks are put in the
decoder's KV cache in front of the prompt, at positions 0..M-1 (keys rotated there), so the decoder
reads them at every layer as it reads any earlier token. Keeping keys and values rather than hidden
states is the same injection (the decoder's own key/value projections of the encoder's states) made
before storage: 2 × kv_heads × head_dim floats per layer instead of hidden (384 vs 576 for SmolLM2).

"Recurrent" in the paper means each segment is encoded with the memory of the previous ones. Here each
chunk is encoded alone (so `e2llm compress` stays parallel over chunks, idempotent and resumable per
document); the recurrence is left to the decoder, which reads all chunks' memory in order.

Training (`make train-rcc`): only the encoder's LoRA learns; the decoder is the shipped one, frozen.
Tasks, short to long: reconstruct 1..W chunks from their memory, continue a chunk from its memory, and
answer HotpotQA training questions from the memory of the document's chunks. The prompt is the
question-only prompt of `e2llm_offline.prompt` behind the memory, exactly as `e2llm ask --mode rcc`.

    python -m e2llm_offline.rcc --config onnx/train_configs/rcc-cpu.json
"""

from __future__ import annotations

import csv
import json
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from .common import RCC_MAX_SEGMENT_TOKENS, default_decoder_gguf, rcc_slot_positions, sha256_file
from .decoder import load_gguf, load_lora, with_lora
from .prompt import PromptBuilder
from .train import Checkpoint, Data, FrozenDecoder, LoRA, Progress, run_steps, setup_run

ROOT = Path(__file__).resolve().parents[2]
MAX_SEGMENT_TOKENS = RCC_MAX_SEGMENT_TOKENS
RECONSTRUCT_QUESTION = "Repeat the document word for word."
CONTINUE_QUESTION = "Continue the document."
TASKS = ("reconstruct", "continue", "qa")


def encode_memory(decoder: FrozenDecoder, lora: LoRA | None, segments: list[list[int]], ratio: int) -> list:
    """Per layer (keys before rotary, values) [1, kv_heads, M, head_dim] of the segments' slots, in order."""
    per_segment = []
    for ids in segments:
        ids = ids[:MAX_SEGMENT_TOKENS]
        keep = torch.tensor(rcc_slot_positions(len(ids), ratio), device=decoder.embed.device)
        rows = decoder.embed[torch.tensor(ids, device=decoder.embed.device)]
        _, kept = decoder(rows[None], lora, keep=keep)
        per_segment.append(kept)
    return [(torch.cat([s[i][0] for s in per_segment], 2), torch.cat([s[i][1] for s in per_segment], 2))
            for i in range(len(per_segment[0]))]


@dataclass
class Example:
    segments: list[list[int]]  # the chunks whose memory the decoder reads, in order
    ids: list[int]  # the prompt after the memory
    target: list[int]
    task: str


class RccExamples:
    def __init__(self, data: Data, builder: PromptBuilder, config: dict, eos: list[int]) -> None:
        self.data, self.builder, self.config, self.eos = data, builder, config, eos
        self.tasks = [t for t in TASKS if config["task_weights"].get(t, 0) > 0]
        self.weights = [config["task_weights"][t] for t in self.tasks]
        self._ids: dict[str, list[int]] = {}

    def tokens(self, text: str) -> list[int]:
        if text not in self._ids:
            self._ids[text] = self.builder.ids_uncached(text)[:MAX_SEGMENT_TOKENS]
        return self._ids[text]

    def prompt(self, question: str) -> list[int]:
        prompt, _ = self.builder.build("question-only", question, max_new_tokens=self.config["max_new_tokens"])
        return prompt.ids

    def target(self, ids: list[int]) -> list[int]:
        return ids[: self.config["max_target_tokens"]] + self.eos

    def example(self, rng: random.Random, progress: float) -> Example:
        task = rng.choices(self.tasks, self.weights)[0]
        if task == "qa":
            q, q_vector = rng.choice(self.data.qa)
            vectors, texts = self.data.docs[q["doc_id"]]
            chosen = list(range(len(texts)))
            if len(chosen) > self.config["memory_chunks"]:
                scores = vectors @ q_vector if q_vector is not None else np.zeros(len(texts))
                chosen = sorted(np.argsort(-scores, kind="stable")[: self.config["memory_chunks"]].tolist())
            return Example([self.tokens(texts[i]) for i in chosen], self.prompt(q["question"]),
                           self.target(self.builder.ids_uncached(q["answers"][0])), task)
        _, texts = self.data.docs[rng.choice(self.data.doc_ids)]
        if task == "continue" and len(texts) > 1:
            start = rng.randrange(len(texts) - 1)
            return Example([self.tokens(texts[start])], self.prompt(CONTINUE_QUESTION),
                           self.target(self.tokens(texts[start + 1])), task)
        # Short to long: reconstruct one chunk at first, up to `window` consecutive ones by the end.
        width = min(len(texts), rng.randint(1, 1 + round(progress * (self.config["window"] - 1))))
        start = rng.randrange(len(texts) - width + 1)
        segments = [self.tokens(t) for t in texts[start:start + width]]
        return Example(segments, self.prompt(RECONSTRUCT_QUESTION), self.target([i for s in segments for i in s]),
                       "reconstruct")


def example_loss(decoder: FrozenDecoder, lora: LoRA, ex: Example, ratio: int, bf16: bool) -> torch.Tensor:
    device = decoder.embed.device
    # bfloat16 matrix products (CUDA, or CPUs with AVX512-BF16: 1.35x faster on this project's CPU).
    with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
        memory = encode_memory(decoder, lora, ex.segments, ratio)
        rows = decoder.embed[torch.tensor(ex.ids + ex.target, device=device)]
        hidden = decoder(rows[None], None, memory=memory)[0]
    start = len(ex.ids)
    logits = F.linear(hidden[start - 1: -1].float(), decoder.lm_head)
    return F.cross_entropy(logits, torch.tensor(ex.target, device=device))


def shipped_decoder(models: Path, gguf: Path | None) -> tuple[FrozenDecoder, dict]:
    """The decoder the product answers with: the GGUF plus the LoRA the manifest says was merged
    (onnx/adapter/lora.safetensors, checked by its sha256)."""
    manifest = json.loads((models / "manifest.json").read_text())
    ckpt = load_gguf(gguf or default_decoder_gguf())
    lora = manifest["decoder"].get("lora")
    if lora:
        path = ROOT / "onnx" / "adapter" / lora["file"]
        if sha256_file(path) != lora["sha256"]:
            raise SystemExit(f"{path} is not the LoRA merged into {models}: re-run `make setup` first")
        deltas, _ = load_lora(path)
        ckpt = with_lora(ckpt, deltas)
    return FrozenDecoder(ckpt), manifest


def main() -> None:
    args, config, run, out_dir, device = setup_run(__doc__, "onnx/rcc")
    decoder, manifest = shipped_decoder(args.models, args.gguf)
    decoder = decoder.to_device(device)
    ratio = config["ratio"]
    lora = LoRA(decoder, config["lora_rank"], config["lora_alpha"], config["lora_targets"]).to(device)
    if config.get("init_lora"):  # warm start, e.g. from the RCC LoRA of the previous decoder release
        from safetensors.numpy import load_file

        lora.load_tensors(load_file(str(ROOT / config["init_lora"])))
    optimizer = torch.optim.AdamW(lora.parameters(), lr=config["lr"], weight_decay=config.get("weight_decay", 0.0))
    tokenizer = Tokenizer.from_file(str(args.models / manifest["decoder"]["tokenizer"]))
    builder = PromptBuilder(tokenizer, manifest["prompt"], manifest["decoder"]["context_length"])
    data = Data(run)
    examples = RccExamples(data, builder, config, builder.ids("<|im_end|>"))
    print(f"RCC encoder LoRA: {sum(p.numel() for p in lora.parameters()):,} parameters, ratio {ratio}; "
          f"{len(data.doc_ids)} documents, {len(data.qa)} questions", flush=True)

    checkpoint = Checkpoint(run / f"checkpoint-{args.config.stem}.pt", {"lora": lora}, optimizer, device)
    step, log = checkpoint.resume()
    progress = Progress(config, step, log)
    rng = random.Random(config["seed"] * 1_000_003 + step)

    def step_fraction() -> float:  # how far the run is: the curriculum goes from short to long
        return len(log) / max(1, config["steps"] - 1)

    def save(step: int, final: bool = False) -> None:
        checkpoint.save(step, log)
        if log:
            with open(out_dir / "loss.csv", "w", newline="") as handle:
                writer = csv.DictWriter(handle, fieldnames=list(log[0]))
                writer.writeheader()
                writer.writerows(log)
        if final:
            from safetensors.numpy import save_file

            save_file(lora.tensors(), str(out_dir / "lora.safetensors"), metadata={
                "steps": str(step), "config": json.dumps(config), "ratio": str(ratio),
                "rank": str(lora.rank), "alpha": str(lora.alpha), "targets": ",".join(lora.targets),
                "decoder_fingerprint": manifest["decoder"]["fingerprint"],
                "source": f"e2llm_offline.rcc, {step} steps"})

    params = list(lora.parameters())
    step = run_steps(config, args.minutes, optimizer, [config["lr"]], params, progress, step, TASKS,
                     lambda: [examples.example(rng, step_fraction()) for _ in range(config["batch_size"])],
                     lambda ex: example_loss(decoder, lora, ex, ratio, config.get("bf16", device.type == "cuda")),
                     save)
    save(step, final=True)
    if step >= config["steps"]:
        checkpoint.remove()
    progress.done(step, out_dir)


if __name__ == "__main__":
    main()
