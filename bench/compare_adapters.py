"""Two trained adapters (or two whole models folders) side by side on HotpotQA's tuning split
(questions neither trained on nor held out), so that choosing what to ship does not spend the held-out
split: per mode, the same questions answered with each, and a paired bootstrap of the difference.

    .venv/bin/python bench/compare_adapters.py A.safetensors B.safetensors [--limit 200] [--modes compressed hybrid]
    .venv/bin/python bench/compare_adapters.py --models models/default models/before --modes rag hybrid
    .venv/bin/python bench/compare_adapters.py --models models/default models/default --flags " --extractive" ""

Each question's paragraphs are its document (as in eval_adapter.py). Writes reports/compare_adapters.json.
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np

from eval import records
from eval_adapter import models_with_adapter, paired_bootstrap
from runner import ROOT, compress, run_eval
from e2llm_offline.train_data import hotpot_rows, write_jsonl  # on the path through eval's import


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("adapters", type=Path, nargs="*", help="two adapter safetensors files")
    parser.add_argument("--models", type=Path, nargs=2, help="two models folders instead (e.g. a new LoRA-merged "
                        "decoder with its adapter, and the previous release)")
    parser.add_argument("--flags", nargs=2, default=["", ""], metavar=("FIRST", "SECOND"),
                        help="extra `e2llm eval` flags for each side (e.g. \" --extractive\" \"\": a leading space keeps argparse from reading the flag as its own)")
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--modes", nargs="*", default=["compressed", "hybrid"])
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--out", type=Path, default=ROOT / "reports" / "compare_adapters.json")
    args = parser.parse_args()
    if bool(args.models) == (len(args.adapters) == 2) or (args.adapters and len(args.adapters) != 2):
        parser.error("give two adapters, or --models with two folders")
    questions = records("tune")[: args.limit]
    compared = args.models or args.adapters
    report: dict = {"split": "tune", "questions": len(questions), "compared": [str(a) for a in compared],
                    "flags": args.flags, "modes": {}}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        docs, qa = work / "docs.jsonl", work / "qa.jsonl"
        doc_rows, qa_rows = hotpot_rows(questions)
        write_jsonl(docs, doc_rows)
        write_jsonl(qa, qa_rows)
        db = work / "tune.db"
        compress(db, docs)
        folders = args.models or [models_with_adapter(a, work / f"adapter{i}") for i, a in enumerate(args.adapters)]
        for mode in args.modes:
            rows = []
            for i, folder in enumerate(folders):
                summary, per_question = run_eval(db, qa, mode, args.max_new_tokens, work / f"{mode}-{i}.jsonl",
                                                 extra=("--models", str(folder), *args.flags[i].split()))
                print(json.dumps({"compared": str(compared[i]), **summary}), flush=True)
                rows.append((summary, per_question))
            metric = lambda i, key: np.array([r[key] for r in rows[i][1]])  # noqa: E731
            report["modes"][mode] = {
                "summaries": [s for s, _ in rows],
                "first_minus_second": {key: paired_bootstrap(metric(0, key), metric(1, key))
                                       for key in ("exact_match", "f1", "contained")}}
    args.out.write_text(json.dumps(report, indent=2))
    for mode, m in report["modes"].items():
        for key, b in m["first_minus_second"].items():
            print(f"{mode} {key}: first - second {b['mean_difference']:+.3f} "
                  f"[{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}]")


if __name__ == "__main__":
    main()
