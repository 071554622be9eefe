"""Answer quality per mode vs document length, on long documents built from held-out HotpotQA.

A document of length L is a run of held-out HotpotQA contexts (each: the question's two gold
paragraphs and eight distractors, ~1.2K tokens) laid end to end until it holds ~L encoder tokens; the
questions asked about it are those of some of its contexts, spread over its length. So the longer the
document, the more distractors surround each answer. Never trained on (the held-out split committed in
onnx/data/hotpotqa_heldout_ids.txt); no SQuAD or RULER material.

    .venv/bin/python bench/eval.py [--lengths 2000 8000 32000 128000] [--questions 40] [--split heldout|tune]
        [--modes ...] [--top-k 4] [--retrieval fused] [--chunk-tokens 128] [--out reports] [--name eval]

`--split tune` draws the documents from the tuning split instead (HotpotQA questions neither held out
nor trained on): tune settings there (bench/tune.py), report on the held-out split.
Writes OUT/NAME.md, OUT/NAME.json and OUT/NAME.png.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

from eval_adapter import paired_bootstrap
from metrics import median
from runner import ROOT, compress, run_eval

sys.path.insert(0, str(ROOT / "onnx"))
from e2llm_offline.train_data import load_hotpotqa, split  # noqa: E402

MODES = ["question-only", "compressed", "hybrid", "rag", "full", "rcc"]
# Each mode against the others a user would choose between, paired over the same questions.
PAIRS = [("hybrid", "rag"), ("compressed", "question-only"), ("hybrid", "full"), ("rcc", "compressed"),
         ("rcc", "hybrid"), ("rcc", "rag")]
METRICS = [("exact_match", "exact match"), ("f1", "F1"), ("contained", "answer contained")]
WORDS_TO_TOKENS = 1.35  # encoder tokens per word of HotpotQA text (measured: 1.3-1.4)


def records(which: str) -> list[dict]:
    train, tune, heldout = split(load_hotpotqa(), random.Random(0))
    return heldout if which == "heldout" else tune


def build(pool: list[dict], length: int, questions: int, rng: random.Random) -> tuple[list[dict], list[dict]]:
    """Documents of ~`length` tokens from contexts of `pool` (each used once) and `questions` questions
    about them, spread evenly over each document."""
    pool = list(pool)
    rng.shuffle(pool)
    mean_tokens = statistics.mean(len(r["text"].split()) for r in pool) * WORDS_TO_TOKENS
    per_doc = max(1, min(math.floor(length / mean_tokens), questions))
    docs, asked = [], []
    while len(asked) < questions:
        parts, offsets, tokens = [], [], 0.0
        while tokens < length * 0.95 or not parts:
            if not pool:
                raise SystemExit(f"not enough contexts for {questions} questions at {length} tokens")
            record = pool.pop()
            offsets.append(sum(len(p["text"]) + 2 for p in parts))
            parts.append(record)
            tokens += len(record["text"].split()) * WORDS_TO_TOKENS
        doc_id = f"len{length}/{len(docs)}"
        text = "\n\n".join(r["text"] for r in parts)
        docs.append({"id": doc_id, "text": text})
        take = min(per_doc, questions - len(asked), len(parts))
        start = rng.randrange(len(parts))
        for j in range(take):
            i = (start + round(j * len(parts) / take)) % len(parts)
            record = parts[i]
            asked.append({"id": record["id"], "doc_id": doc_id, "question": record["question"],
                          "answers": [record["answer"]], "length": length, "byte_offset": offsets[i],
                          "position": offsets[i] / max(1, len(text))})
    asked.sort(key=lambda q: (q["doc_id"], q["byte_offset"]))  # one document's questions in a row: prefix cache
    return docs, asked


def prepare(split_name: str, lengths: list[int], questions_per_length: int, chunk_tokens: int, seed: int,
            work: Path, rcc: bool = False) -> tuple[Path, list[dict], dict]:
    """Builds and compresses the documents (with RCC memory when `rcc`); the database, the questions (also
    in work/questions.jsonl) and the documents' count and mean length per length."""
    rng = random.Random(seed)
    pool = records(split_name)
    docs, questions = [], []
    for length in lengths:
        d, q = build(pool, length, questions_per_length, rng)
        docs += d
        questions += q
    work.mkdir(parents=True, exist_ok=True)
    (work / "docs.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (work / "questions.jsonl").write_text("".join(json.dumps(q) + "\n" for q in questions))
    db = work / f"eval-{split_name}-{chunk_tokens}.db"
    compress(db, work / "docs.jsonl", "--chunk-tokens", str(chunk_tokens), *(["--rcc"] if rcc else []))
    connection = sqlite3.connect(db)
    documents = {}
    for length in lengths:
        ids = [d["id"] for d in docs if d["id"].startswith(f"len{length}/")]
        tokens = [connection.execute("SELECT max(token_end) FROM chunks WHERE doc_id = ?", (i,)).fetchone()[0]
                  for i in ids]
        documents[str(length)] = {"count": len(ids), "mean_tokens": statistics.mean(tokens)}
    connection.close()
    return db, questions, documents


def token_position(connection: sqlite3.Connection, question: dict) -> int:
    """Encoder-token position where the question's context starts in its document."""
    row = connection.execute("SELECT token_start FROM chunks WHERE doc_id = ? AND byte_start <= ? "
                             "ORDER BY seq DESC LIMIT 1", (question["doc_id"], question["byte_offset"])).fetchone()
    return row[0] if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="*", default=[2000, 8000, 32000, 128000])
    parser.add_argument("--questions", type=int, default=40, help="questions per length")
    parser.add_argument("--split", choices=["heldout", "tune"], default="heldout")
    parser.add_argument("--modes", nargs="*", default=MODES)
    parser.add_argument("--top-k", type=int, default=4)
    parser.add_argument("--retrieval", default="fused", choices=["dense", "lexical", "fused"])
    parser.add_argument("--chunk-tokens", type=int, default=128)
    parser.add_argument("--max-soft-tokens", type=int, default=64, help="compressed and hybrid")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", type=Path, help="keep the database here (reused when it exists)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--name", default="eval")
    parser.add_argument("--reuse", action="store_true",
                        help="take a mode's answers from an earlier run's WORK/MODE.jsonl when it has them all")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    report: dict = {"split": args.split, "lengths": args.lengths, "questions_per_length": args.questions,
                    "top_k": args.top_k, "retrieval": args.retrieval, "chunk_tokens": args.chunk_tokens,
                    "max_soft_tokens": args.max_soft_tokens,
                    "max_new_tokens": args.max_new_tokens, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        db, questions, report["documents"] = prepare(args.split, args.lengths, args.questions, args.chunk_tokens,
                                                     args.seed, work, rcc="rcc" in args.modes)
        connection = sqlite3.connect(db)
        positions = [token_position(connection, q) for q in questions]
        scores: dict[str, dict[str, list[float]]] = {}
        for mode in args.modes:
            earlier = work / f"{mode}.jsonl"
            kept = earlier.read_text().splitlines() if args.reuse and earlier.is_file() else []
            if kept and len(kept) == len(questions):
                rows = [json.loads(line) for line in kept]
                summary = {"errors": sum(1 for r in rows if r["error"])}
            else:
                summary, rows = run_eval(db, work / "questions.jsonl", mode, args.max_new_tokens, earlier,
                                         extra=("--top-k", str(args.top_k), "--retrieval", args.retrieval,
                                                "--max-soft-tokens", str(args.max_soft_tokens)))
            scores[mode] = {metric: [float(r[metric]) for r in rows] for metric, _ in METRICS}
            per_length = {}
            for length in args.lengths:
                chosen = [(q, r, p) for q, r, p in zip(questions, rows, positions) if q["length"] == length]
                per_length[str(length)] = score([r for _, r, _ in chosen])
                if mode == "full":
                    # full reads the head of the document that fits the decoder's window.
                    head = [r for _, r, p in chosen if p < 7_500]
                    per_length[str(length)]["within_window"] = {"questions": len(head), **score(head)}
            report["modes"][mode] = {"errors": summary["errors"], "lengths": per_length}
            print(mode, json.dumps({k: round(v["f1"], 3) for k, v in per_length.items()}), flush=True)
            (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    report["paired_bootstrap"] = {
        metric: {f"{a} - {b}": paired_bootstrap(np.array(scores[a][metric]), np.array(scores[b][metric]))
                 for a, b in PAIRS if a in scores and b in scores}
        for metric, _ in METRICS}
    (args.out / f"{args.name}.json").write_text(json.dumps(report, indent=2))
    write_report(report, args.out, args.name)


def score(rows: list[dict]) -> dict:
    n = max(1, len(rows))
    ttft = sorted(r["ttft_ms"] for r in rows if not r["error"]) or [0.0]
    return {"questions": len(rows), "exact_match": sum(r["exact_match"] for r in rows) / n,
            "f1": sum(r["f1"] for r in rows) / n, "contained": sum(r["contained"] for r in rows) / n,
            "prompt_tokens": statistics.mean(r["prompt_tokens"] for r in rows) if rows else 0,
            "ttft_ms_p50": median(ttft)}


def write_report(report: dict, out: Path, name: str) -> None:
    lengths = [str(n) for n in report["lengths"]]
    docs = report["documents"]
    lines = [f"# Answer quality vs document length ({report['split']} HotpotQA)", "",
             f"`bench/eval.py --split {report['split']}`: per length, {report['questions_per_length']} questions about "
             "documents made of HotpotQA contexts laid end to end (each question's two gold paragraphs among the "
             "other contexts' paragraphs). Documents per length: "
             + ", ".join(f"{n}: {docs[n]['count']} of ~{docs[n]['mean_tokens']:,.0f} tokens" for n in lengths)
             + f". rag/hybrid: top-k {report['top_k']}, retrieval `{report['retrieval']}`; compressed/hybrid: at most "
             f"{report['max_soft_tokens']} soft tokens; rcc: the memory of the 4 chunks retrieval ranks first; chunks of "
             f"{report['chunk_tokens']} tokens; {report['max_new_tokens']} new tokens at most. `full` reads the head "
             "of the document that fits the decoder's 8,192-token window.", ""]
    for metric, label in METRICS:
        lines += [f"## {label}", "", "| mode | " + " | ".join(lengths) + " |", "|---|" + "---|" * len(lengths)]
        for mode, result in report["modes"].items():
            cells = [f"{result['lengths'][n][metric]:.3f}" for n in lengths]
            lines.append(f"| {mode} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += ["## Decoder input tokens (mean) and time to first token (median, ms)", "",
              "| mode | " + " | ".join(lengths) + " |", "|---|" + "---|" * len(lengths)]
    for mode, result in report["modes"].items():
        cells = [f"{result['lengths'][n]['prompt_tokens']:,.0f} / {result['lengths'][n]['ttft_ms_p50']:,.0f}"
                 for n in lengths]
        lines.append(f"| {mode} | " + " | ".join(cells) + " |")
    lines.append("")
    if "full" in report["modes"]:
        lines += ["## Where full context stops", "",
                  "`full` on the questions whose context starts within the first ~7,500 tokens (inside the window) "
                  "vs all:", "", "| length | questions in window | F1 in window | F1 all |", "|---|---|---|---|"]
        for n in lengths:
            r = report["modes"]["full"]["lengths"][n]
            w = r["within_window"]
            lines.append(f"| {n} | {w['questions']}/{r['questions']} | {w['f1']:.3f} | {r['f1']:.3f} |")
        lines.append("")
    if any(report.get("paired_bootstrap", {}).values()):
        lines += ["## Paired bootstrap over all questions", "",
                  "Mean difference and 95% interval per metric (10,000 resamples of the questions).", "",
                  "| comparison | " + " | ".join(label for _, label in METRICS) + " |", "|---|" + "---|" * len(METRICS)]
        for pair in report["paired_bootstrap"]["f1"]:
            cells = [report["paired_bootstrap"][metric][pair] for metric, _ in METRICS]
            lines.append(f"| {pair} | " + " | ".join(
                f"{b['mean_difference']:+.3f} [{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}]" for b in cells) + " |")
        lines.append("")
    lines += [f"![{name}]({name}.png)", ""]
    (out / f"{name}.md").write_text("\n".join(lines) + "\n")
    plot(report, out / f"{name}.png")
    print((out / f"{name}.md").read_text())


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lengths = report["lengths"]
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    for ax, metric, label in [(axes[0], "f1", "F1"), (axes[1], "contained", "answer contained")]:
        for mode, result in report["modes"].items():
            ax.plot(lengths, [result["lengths"][str(n)][metric] for n in lengths], marker="o", label=mode)
        ax.set_xscale("log")
        ax.set_xticks(lengths, [f"{n // 1000}K" for n in lengths])
        ax.axvline(8192, color="grey", linestyle=":", linewidth=1)
        ax.set_xlabel("document tokens (dotted: decoder window)")
        ax.set_ylabel(label)
    axes[1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


if __name__ == "__main__":
    main()
