"""RCC on held-out data: reconstruction (BLEU-4, token F1) of chunks never trained on, per models folder
(trained RCC, the untrained baseline, the E2LLM adapter's compressed mode), and held-out HotpotQA
questions in `rcc` vs compressed, hybrid and rag (EM, F1, answer-contained, paired bootstrap).

    .venv/bin/python bench/eval_rcc.py [--recon 200] [--limit 200] [--baseline-models models/rcc-base]

Needs `make train-data` (data/train/eval.db, eval_qa.jsonl) and `make setup` with RCC weights
(onnx/rcc/lora.safetensors). Writes reports/rcc_eval.md and .json.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import random
import sqlite3
import tempfile
from pathlib import Path

import numpy as np

from eval_adapter import bootstrap_lines, example_lines, paired_bootstrap
from runner import ROOT, compress, run_eval

DATA = ROOT / "data" / "train"
RECONSTRUCT = "Repeat the document word for word."  # the reconstruction task's prompt in training
KEYS = ("exact_match", "f1", "contained")


def bleu4(reference: str, candidate: str) -> float:
    """Sentence BLEU-4 over whitespace tokens (lower-cased), with add-one smoothing of the n-gram
    precisions above unigrams (Lin & Och 2004), brevity penalty as in BLEU."""
    ref, cand = reference.lower().split(), candidate.lower().split()
    if not cand:
        return 0.0
    logs = []
    for n in range(1, 5):
        grams = lambda words: collections.Counter(tuple(words[i:i + n]) for i in range(len(words) - n + 1))  # noqa: E731
        c, r = grams(cand), grams(ref)
        overlap, total = sum((c & r).values()), max(1, sum(c.values()))
        if n == 1:
            if overlap == 0:
                return 0.0
            logs.append(math.log(overlap / total))
        else:
            logs.append(math.log((overlap + 1) / (total + 1)))
    brevity = min(1.0, math.exp(1 - len(ref) / len(cand)))
    return brevity * math.exp(sum(logs) / 4)


def with_models(models: Path | None):
    """Context: E2LLM_MODELS set to `models` (if given) for the calls inside."""
    class Scope:
        def __enter__(self):
            self.before = os.environ.get("E2LLM_MODELS")
            if models is not None:
                os.environ["E2LLM_MODELS"] = str(models.resolve())

        def __exit__(self, *exc):
            if self.before is None:
                os.environ.pop("E2LLM_MODELS", None)
            else:
                os.environ["E2LLM_MODELS"] = self.before
    return Scope()


def reconstruction(work: Path, count: int, mode: str, models: Path | None, label: str) -> dict:
    """`count` held-out chunks (seed 0), each compressed alone, regenerated from its memory (rcc) or
    its vector (compressed) with the training prompt."""
    con = sqlite3.connect(DATA / "eval.db")
    chunks = con.execute("SELECT doc_id, seq, text FROM chunks ORDER BY doc_id, seq").fetchall()
    random.Random(0).shuffle(chunks)
    chosen = chunks[:count]
    docs = work / "recon.jsonl"
    docs.write_text("".join(json.dumps({"id": f"{d}#{s}", "text": t}) + "\n" for d, s, t in chosen))
    db = work / f"recon-{label}.db"
    with with_models(models):
        compress(db, docs, *(["--rcc"] if mode == "rcc" else []))
        single = {d for (d,) in sqlite3.connect(db).execute("SELECT doc_id FROM chunks GROUP BY doc_id HAVING count(*) = 1")}
        questions = work / "recon_q.jsonl"
        questions.write_text("".join(json.dumps({"id": f"{d}#{s}", "doc_id": f"{d}#{s}", "question": RECONSTRUCT,
                                                 "answers": [" ".join(t.split())]}) + "\n"
                                     for d, s, t in chosen if f"{d}#{s}" in single))
        summary, rows = run_eval(db, questions, mode, 192, work / f"recon-{label}.jsonl", None, ("--multiline",))
    bleu = [bleu4(r["answers"][0], r["prediction"]) for r in rows]
    return {"label": label, "mode": mode, "models": str(models or "default"), "chunks": len(rows),
            "bleu4": float(np.mean(bleu)), "token_f1": summary["f1"], "exact_match": summary["exact_match"],
            "examples": [{"original": r["answers"][0][:300], "regenerated": r["prediction"][:300]} for r in rows[:3]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recon", type=int, default=200)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--modes", nargs="*", default=["rcc", "compressed", "hybrid", "rag"])
    parser.add_argument("--baseline-models", type=Path, help="another models folder's RCC (e.g. the untrained one)")
    parser.add_argument("--baseline-recon", type=int, help="chunks for the baseline's and compressed mode's "
                        "reconstruction (default: --recon)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    report: dict = {"limit": args.limit, "max_new_tokens": args.max_new_tokens, "modes": {}, "reconstruction": []}
    per_question: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.recon:
            others = args.baseline_recon or args.recon
            runs = [("rcc", None, "rcc", args.recon)]
            if args.baseline_models:
                runs.append(("rcc", args.baseline_models, "rcc-baseline", others))
            runs.append(("compressed", None, "compressed", others))
            for mode, models, label, count in runs:
                report["reconstruction"].append(reconstruction(work, count, mode, models, label))
                print(json.dumps({k: v for k, v in report["reconstruction"][-1].items() if k != "examples"}), flush=True)
        # The held-out documents with their memory (built once, kept beside eval.db).
        rcc_db = DATA / "eval_rcc.db"
        docs = work / "eval_docs.jsonl"
        con = sqlite3.connect(DATA / "eval.db")
        texts: dict[str, list[str]] = {}
        for doc_id, text in con.execute("SELECT doc_id, text FROM chunks ORDER BY doc_id, seq"):
            texts.setdefault(doc_id, []).append(text)
        docs.write_text("".join(json.dumps({"id": d, "text": "".join(t)}) + "\n" for d, t in texts.items()))
        summary = compress(rcc_db, docs, "--rcc")
        print(json.dumps({k: summary[k] for k in ("added", "unchanged", "chunks", "chunks_per_second")}), flush=True)
        report["memory_bytes_per_token"] = memory_bytes(rcc_db)
        for mode in args.modes:
            summary, rows = run_eval(rcc_db, DATA / "eval_qa.jsonl", mode, args.max_new_tokens, work / f"{mode}.jsonl",
                                     args.limit)
            report["modes"][mode] = summary
            per_question[mode] = rows
            print(json.dumps(summary), flush=True)
        metric = lambda rows, key: np.array([r[key] for r in rows])  # noqa: E731
        report["bootstrap"] = {f"rcc - {other}": {key: paired_bootstrap(metric(per_question["rcc"], key),
                                                                        metric(per_question[other], key))
                                                  for key in KEYS}
                               for other in args.modes if other != "rcc" and "rcc" in per_question}
        report["examples"] = [{"question": per_question["rcc"][i]["question"],
                               "answers": per_question["rcc"][i]["answers"],
                               **{m: per_question[m][i]["prediction"] for m in args.modes}} for i in range(5)]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rcc_eval.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, args.out / "rcc_eval.md")
    print((args.out / "rcc_eval.md").read_text())


def memory_bytes(db: Path) -> dict:
    con = sqlite3.connect(db)
    memory, slots = con.execute("SELECT sum(length(memory)), sum(slots) FROM chunk_memory").fetchone()
    vectors, texts, tokens = con.execute(
        "SELECT sum(length(vector)), sum(length(CAST(text AS BLOB))), (SELECT sum(n_tokens) FROM documents) FROM chunks"
    ).fetchone()
    return {"memory_bytes": memory, "slots": slots, "vector_bytes": vectors, "text_bytes": texts,
            "encoder_tokens": tokens, "memory_per_token": memory / tokens, "vector_per_token": vectors / tokens}


def write_markdown(report: dict, path: Path) -> None:
    lines = ["# RCC on held-out data", "",
             "`bench/eval_rcc.py`. Greedy decoding; reconstruction up to 192 new tokens, questions up to "
             f"{report['max_new_tokens']}.", ""]
    if report["reconstruction"]:
        lines += ["## Reconstruction", "", "Held-out HotpotQA chunks (never trained on), each compressed alone and "
                  "regenerated with the training prompt (\"Repeat the document word for word.\").", "",
                  "| what | models | chunks | BLEU-4 | token F1 |", "|---|---|---|---|---|"]
        for r in report["reconstruction"]:
            lines.append(f"| {r['label']} | `{r['models']}` | {r['chunks']} | {r['bleu4']:.3f} | {r['token_f1']:.3f} |")
        for r in report["reconstruction"]:
            lines += ["", f"{r['label']}:"]
            for ex in r["examples"][:2]:
                lines += [f"- original: {ex['original'][:200]!r}", f"  regenerated: {ex['regenerated'][:200]!r}"]
    m = report.get("memory_bytes_per_token")
    if m:
        lines += ["", "## Storage", "",
                  f"{m['slots']:,} memory slots, {m['memory_bytes'] / 2**20:.1f} MiB of memory for {m['encoder_tokens']:,} "
                  f"encoder tokens: **{m['memory_per_token']:.0f} bytes per source token** (vectors: "
                  f"{m['vector_per_token']:.1f}; text: {m['text_bytes'] / m['encoder_tokens']:.1f})."]
    lines += ["", "## Held-out HotpotQA", "",
              "| mode | questions | exact match | F1 | answer contained | decoder input positions (mean) | time to first token p50 (ms) |",
              "|---|---|---|---|---|---|---|"]
    for mode, s in report["modes"].items():
        lines.append(f"| {mode} | {s['questions']} | {s['exact_match']:.3f} | {s['f1']:.3f} | {s['contained']:.3f} | "
                     f"{s['mean_prompt_tokens']:.0f} | {s['ttft_ms_p50']:.0f} |")
    lines += ["", *bootstrap_lines(report.get("bootstrap", {}))]
    lines += ["", "## Examples", "", *example_lines(report)]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
