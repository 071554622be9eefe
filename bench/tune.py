"""Choose hybrid's defaults (retrieval, top-k, chunk size, soft-token cap) on the tuning split: HotpotQA questions that
are neither held out nor trained on, in long documents built as bench/eval.py builds them. One factor at
a time from the current defaults: retrieval x top-k at the default chunk size, then chunk sizes and
soft-token caps at the best of those. The held-out split is not touched (bench/eval.py reports on it).

    .venv/bin/python bench/tune.py [--lengths 8000 32000] [--questions 30] [--out reports]

Writes reports/tune.md and reports/tune.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from eval import prepare, score
from runner import ROOT, run_eval

DEFAULT_CHUNK_TOKENS = 128
BASELINE_MAX_SOFT_TOKENS = 256  # the cap of the retrieval x top-k grid (as good as none at 8K-32K: ~70-260 chunks)


def evaluate(db: Path, questions_path: Path, questions: list[dict], lengths: list[int], mode: str, top_k: int,
             retrieval: str, max_new_tokens: int, work: Path, max_soft_tokens: int = BASELINE_MAX_SOFT_TOKENS) -> dict:
    _, rows = run_eval(db, questions_path, mode, max_new_tokens, work / "tune.jsonl",
                       extra=("--top-k", str(top_k), "--retrieval", retrieval,
                              "--max-soft-tokens", str(max_soft_tokens)))
    result = {"all": score(rows)}
    for length in lengths:
        result[str(length)] = score([r for q, r in zip(questions, rows) if q["length"] == length])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lengths", type=int, nargs="*", default=[8000, 32000])
    parser.add_argument("--questions", type=int, default=30, help="questions per length")
    parser.add_argument("--top-ks", type=int, nargs="*", default=[2, 4, 8])
    parser.add_argument("--retrievals", nargs="*", default=["dense", "fused"])
    parser.add_argument("--chunk-tokens", type=int, nargs="*", default=[64, 256])
    parser.add_argument("--max-soft-tokens", type=int, nargs="*", default=[64, 1024])
    parser.add_argument("--modes", nargs="*", default=["hybrid"], help="rag too, for reference (slower)")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--resume", action="store_true", help="keep the runs already in OUT/tune.json, skip them")
    parser.add_argument("--work", type=Path)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "tune.json"
    runs = json.loads(previous.read_text())["runs"] if args.resume and previous.is_file() else []

    def done(chunk_tokens: int, retrieval: str, top_k: int, mode: str, cap: int = BASELINE_MAX_SOFT_TOKENS) -> bool:
        key = (chunk_tokens, retrieval, top_k, mode, cap)
        return any((r["chunk_tokens"], r["retrieval"], r["top_k"], r["mode"],
                    r.get("max_soft_tokens", BASELINE_MAX_SOFT_TOKENS)) == key for r in runs)

    def record(chunk_tokens: int, retrieval: str, top_k: int, mode: str, result: dict,
               cap: int = BASELINE_MAX_SOFT_TOKENS) -> None:
        runs.append({"mode": mode, "chunk_tokens": chunk_tokens, "retrieval": retrieval, "top_k": top_k,
                     "max_soft_tokens": cap, **result})
        print(mode, chunk_tokens, retrieval, top_k, json.dumps(result["all"]), flush=True)
        (args.out / "tune.json").write_text(json.dumps({"lengths": args.lengths, "questions_per_length":
                                                        args.questions, "runs": runs}, indent=2))

    with tempfile.TemporaryDirectory() as tmp:
        work = args.work or Path(tmp)
        db, questions, _ = prepare("tune", args.lengths, args.questions, DEFAULT_CHUNK_TOKENS, 0, work)
        for retrieval in args.retrievals:
            for top_k in args.top_ks:
                for mode in args.modes:
                    if done(DEFAULT_CHUNK_TOKENS, retrieval, top_k, mode):
                        continue
                    record(DEFAULT_CHUNK_TOKENS, retrieval, top_k, mode,
                           evaluate(db, work / "questions.jsonl", questions, args.lengths, mode, top_k, retrieval,
                                    args.max_new_tokens, work))
        # The best of the grid asked for (resumed runs outside it do not count).
        grid = [r for r in runs if r["mode"] == "hybrid" and r["chunk_tokens"] == DEFAULT_CHUNK_TOKENS
                and r["retrieval"] in args.retrievals and r["top_k"] in args.top_ks
                and r.get("max_soft_tokens", BASELINE_MAX_SOFT_TOKENS) == BASELINE_MAX_SOFT_TOKENS]
        best = max(grid, key=lambda r: (r["all"]["f1"], r["all"]["contained"]))
        for cap in args.max_soft_tokens:
            if not done(DEFAULT_CHUNK_TOKENS, best["retrieval"], best["top_k"], "hybrid", cap):
                record(DEFAULT_CHUNK_TOKENS, best["retrieval"], best["top_k"], "hybrid",
                       evaluate(db, work / "questions.jsonl", questions, args.lengths, "hybrid", best["top_k"],
                                best["retrieval"], args.max_new_tokens, work, cap), cap)
        for chunk_tokens in args.chunk_tokens:
            if done(chunk_tokens, best["retrieval"], best["top_k"], "hybrid"):
                continue
            db, questions, _ = prepare("tune", args.lengths, args.questions, chunk_tokens, 0, work)
            record(chunk_tokens, best["retrieval"], best["top_k"], "hybrid",
                   evaluate(db, work / "questions.jsonl", questions, args.lengths, "hybrid", best["top_k"],
                            best["retrieval"], args.max_new_tokens, work))
    write_report(runs, args)


def write_report(runs: list[dict], args: argparse.Namespace) -> None:
    lengths = [str(n) for n in args.lengths]
    best = max((r for r in runs if r["mode"] == "hybrid"), key=lambda r: (r["all"]["f1"], r["all"]["contained"]))
    lines = ["# Tuning hybrid (tuning split, never the held-out one)", "",
             f"`bench/tune.py`: {args.questions} questions per length ({', '.join(lengths)} tokens) from HotpotQA "
             "questions neither held out nor trained on, documents built as in `bench/eval.py`. F1 / answer "
             "contained per setting.", "",
             "| mode | chunk tokens | soft tokens at most | retrieval | top-k | F1 all | contained all | "
             + " | ".join(f"F1 {n}" for n in lengths) + " | prompt tokens |",
             "|---|---|---|---|---|---|---|" + "---|" * len(lengths) + "---|"]
    for r in runs:
        lines.append(f"| {r['mode']} | {r['chunk_tokens']} | {r.get('max_soft_tokens', BASELINE_MAX_SOFT_TOKENS)} | {r['retrieval']} | {r['top_k']} | {r['all']['f1']:.3f} | "
                     f"{r['all']['contained']:.3f} | " + " | ".join(f"{r[n]['f1']:.3f}" for n in lengths)
                     + f" | {r['all']['prompt_tokens']:,.0f} |")
    lines += ["", f"Best hybrid setting: chunk tokens {best['chunk_tokens']}, soft tokens at most "
              f"{best.get('max_soft_tokens', BASELINE_MAX_SOFT_TOKENS)}, retrieval `{best['retrieval']}`, "
              f"top-k {best['top_k']} (F1 {best['all']['f1']:.3f}, contained {best['all']['contained']:.3f}).", ""]
    (args.out / "tune.md").write_text("\n".join(lines) + "\n")
    print((args.out / "tune.md").read_text())


if __name__ == "__main__":
    main()
