"""The prompt every mode sends, built in Python exactly as `src/ask/prompt.rs` builds it in Rust.

The template strings live in ``onnx/prompt.json`` (copied into each manifest); the layout is

    prefix · context_prefix · CONTEXT · context_suffix · question_prefix · QUESTION · suffix

where CONTEXT depends on the mode (question-only has no context block at all):

- ``compressed``: the soft tokens (one per chunk vector, pooled down to ``max_soft_tokens``);
- ``rag``: the retrieved chunks' trimmed texts joined by ``chunk_separator``, tokenised as one piece;
- ``hybrid``: the soft tokens of the chunks retrieval did not choose, then ``chunk_separator`` + the
  retrieved texts as in ``rag`` (each chunk once: as a vector or as text);
- ``full``: the document's chunk texts concatenated, tokenised as one piece and cut to the budget;
- ``rcc``: no context block: the question-only prompt, behind the chunks' RCC memory, which sits in the
  KV cache at positions 0..M-1 (``Prompt.memory_slots``; e2llm_offline.rcc).

Each text piece is tokenised on its own (no special tokens added), as the Rust decoder does.
``tests/python/test_prompt_parity.py`` runs `e2llm ask --json --show-prompt` and checks this builder
gives the same token sequence for the same document, question and chunks.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

MODES = ("question-only", "compressed", "hybrid", "rag", "full")
RCC_MODE = "rcc"  # trained by e2llm_offline.rcc, not with the adapter
# Mirrors of the constants in src/ask/mod.rs and src/ask/options.rs (the parity test fails if they drift).
MAX_QUESTION_TOKENS = 512
QUESTION_RESERVE = 128
DEFAULT_MAX_SOFT_TOKENS = 64
DEFAULT_TOP_K = 4


def pool_rows(vectors: np.ndarray, groups: int, normalize: bool = True) -> np.ndarray:
    """At most `groups` rows: runs of consecutive rows averaged (re-normalised when the rows are unit
    vectors); `vector::pool_rows` in Rust."""
    rows = vectors.shape[0]
    if rows <= groups or groups == 0:
        return vectors
    out = []
    for g in range(groups):
        start, end = g * rows // groups, (g + 1) * rows // groups
        mean = vectors[start:end].astype(np.float32).sum(axis=0)
        if normalize:
            norm = float(np.sqrt(np.dot(mean, mean)))
            mean = mean / norm if norm > 0 else mean * 0.0
        else:
            mean = mean / (end - start)
        out.append(mean)
    return np.stack(out).astype(np.float32)


@dataclass
class Prompt:
    """A prompt as the decoder reads it: token ids, with `soft_tokens` rows inserted at `soft_at`."""

    ids: list[int]
    soft_at: int = 0
    soft_tokens: int = 0
    memory_slots: int = 0  # RCC memory positions in front of `ids`
    # Positions (in the final sequence, soft tokens included) of the question-independent prefix that
    # the prefix cache keeps; informative only.
    pieces: list[tuple[str, int]] = field(default_factory=list)

    @property
    def length(self) -> int:
        return len(self.ids) + self.soft_tokens + self.memory_slots


class PromptBuilder:
    def __init__(self, tokenizer, template: dict, context_length: int) -> None:
        self.tok = tokenizer
        self.t = template
        self.context_length = context_length
        self._cache: dict[str, list[int]] = {}
        frame_text = self.ids(template["question_prefix"] + template["suffix"])
        self.frame = (len(self.ids(template["prefix"])) + len(self.ids(template["context_prefix"]))
                      + len(self.ids(template["context_suffix"])) + len(frame_text) + 2)

    def ids(self, text: str) -> list[int]:
        if text not in self._cache:
            self._cache[text] = self.tok.encode(text, add_special_tokens=False).ids
        return self._cache[text]

    def question_ids(self, question: str) -> list[int]:
        return self.tok.encode(question, add_special_tokens=False).ids[:MAX_QUESTION_TOKENS]

    def budget(self, question_ids: list[int], max_new_tokens: int) -> int:
        question_room = max(len(question_ids), QUESTION_RESERVE)
        return max(0, self.context_length - (max_new_tokens + self.frame + question_room))

    def build(self, mode: str, question: str, *, texts: list[str] | None = None, vectors: np.ndarray | None = None,
              selected: list[int] | None = None, max_new_tokens: int = 32,
              max_soft_tokens: int = DEFAULT_MAX_SOFT_TOKENS, max_context_tokens: int | None = None,
              normalized: bool = True) -> tuple[Prompt, np.ndarray | None]:
        """The prompt of `mode` and the pooled chunk vectors its soft tokens come from (None without).
        `texts`/`vectors` are the document's chunks; `selected` the retrieved chunk indices (rag, hybrid),
        in document order. `max_context_tokens` lowers the budget (training's cost cap)."""
        if mode == RCC_MODE:
            # The memory's slot count comes from the stored chunks; the token ids are question-only's.
            prompt, _ = self.build("question-only", question, max_new_tokens=max_new_tokens)
            return prompt, None
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r} (expected one of {', '.join(MODES)})")
        t = self.t
        q_ids = self.question_ids(question)
        budget = self.budget(q_ids, max_new_tokens)
        if max_context_tokens is not None:
            budget = min(budget, max_context_tokens)
        soft = None
        context_ids: list[int] = []
        has_context = mode != "question-only"
        if mode in ("compressed", "hybrid"):
            # hybrid: each chunk once, as text (the retrieved ones) or as a soft token (the rest).
            as_text = set(selected or []) if mode == "hybrid" else set()
            rest = [i for i in range(len(vectors)) if i not in as_text]
            soft = pool_rows(vectors[rest], max_soft_tokens, normalized)
            soft = soft[: min(len(soft), budget)]
            budget -= len(soft)
        if mode in ("rag", "hybrid"):
            chosen = [texts[i].strip() for i in sorted(selected or [])]
            separator = t["chunk_separator"] if soft is not None else ""
            context_ids = self.ids_uncached(separator + t["chunk_separator"].join(chosen))[:budget]
        if mode == "full":
            context_ids = self.ids_uncached("".join(texts))[:budget]
        head = self.ids(t["prefix"]) + (self.ids(t["context_prefix"]) if has_context else [])
        ids = list(head)
        soft_at = len(ids)
        ids += context_ids
        if has_context:
            ids += self.ids(t["context_suffix"])
        ids += self.ids(t["question_prefix"]) + q_ids + self.ids(t["suffix"])
        return Prompt(ids=ids, soft_at=soft_at, soft_tokens=0 if soft is None else len(soft)), soft

    def ids_uncached(self, text: str) -> list[int]:
        return self.tok.encode(text, add_special_tokens=False).ids if text else []
