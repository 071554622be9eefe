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
from e2llm_offline.prompt import MODES, PromptBuilder  # noqa: E402

QUESTIONS = ["Which Congress is Roosevelt addressing?", "What are the four freedoms?"]


def flatten(parts: list[dict]) -> tuple[list[int], list[tuple[int, int]]]:
    """Token ids, and (position among the ids, count) of each run of soft tokens."""
    ids, soft = [], []
    for part in parts:
        if "tokens" in part:
            ids += part["tokens"]
        else:
            soft.append((len(ids), part["soft_tokens"]))
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
