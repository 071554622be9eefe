"""Held-out evaluation of the trained adapter (HotpotQA questions never trained on; ARCHITECTURE.md, "Data"):
per mode — question-only, compressed, hybrid, rag, full — exact match, F1, answer-contained rate,
decoder input tokens; paired bootstrap of compressed vs question-only and hybrid vs rag; and
reconstruction quality (token F1 of the text regenerated from one held-out chunk's vector).

    .venv/bin/python bench/eval_adapter.py [--limit 200] [--recon 60] [--out reports]
        [--adapter onnx/adapter/adapter.safetensors]   # another trained adapter, before shipping it
        [--baseline-models models/before]   # the same questions with other models: paired, per mode
        [--limit-mode full=100]             # fewer questions for a costly mode (both sides alike)

Needs `make train-data` (data/train/eval.db, eval_qa.jsonl) and `make setup` (adapter.onnx).
Writes reports/adapter_eval.md and .json.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sqlite3
import sys
import tempfile
from pathlib import Path

import numpy as np

from runner import ROOT, compress, run_eval

DATA = ROOT / "data" / "train"
MODES = ["question-only", "compressed", "hybrid", "rag", "full"]
UNDERSTAND_QUESTION = "Repeat the document word for word."  # the understanding task's prompt in training


def paired_bootstrap(a: np.ndarray, b: np.ndarray, samples: int = 10_000, seed: int = 0) -> dict:
    """Mean difference a - b over questions, its 95% interval, and P(difference <= 0) under resampling."""
    rng = np.random.default_rng(seed)
    diff = a - b
    means = diff[rng.integers(0, len(diff), size=(samples, len(diff)))].mean(axis=1)
    return {"mean_difference": float(diff.mean()), "ci95": [float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))],
            "p_not_better": float((means <= 0).mean())}


def reconstruction(work: Path, count: int, seed: int) -> dict:
    """One held-out chunk per document, compressed alone (one vector), then regenerated."""
    con = sqlite3.connect(DATA / "eval.db")
    chunks = con.execute("SELECT doc_id, seq, text FROM chunks ORDER BY doc_id, seq").fetchall()
    random.Random(seed).shuffle(chunks)
    chosen = chunks[:count]
    docs = work / "recon.jsonl"
    docs.write_text("".join(json.dumps({"id": f"{d}#{s}", "text": t}) + "\n" for d, s, t in chosen))
    db = work / "recon.db"
    compress(db, docs)
    single = {d for (d,) in sqlite3.connect(db).execute(
        "SELECT doc_id FROM chunks GROUP BY doc_id HAVING count(*) = 1")}
    questions = work / "recon_q.jsonl"
    questions.write_text("".join(json.dumps({"id": f"{d}#{s}", "doc_id": f"{d}#{s}", "question": UNDERSTAND_QUESTION,
                                             "answers": [" ".join(t.split())]}) + "\n"
                                 for d, s, t in chosen if f"{d}#{s}" in single))
    summary, rows = run_eval(db, questions, "compressed", 192, work / "recon_out.jsonl", None, ("--multiline",))
    return {"chunks": summary["questions"], "token_f1": summary["f1"], "exact_match": summary["exact_match"],
            "examples": [{"original": r["answers"][0][:300], "regenerated": r["prediction"][:300]} for r in rows[:3]]}


def models_with_adapter(adapter: Path, work: Path) -> Path:
    """A models folder that is the default one with `adapter` (safetensors) exported in place of its
    adapter.onnx: the other files are linked, the manifest's adapter entry and file hash rewritten."""
    sys.path.insert(0, str(ROOT / "onnx"))
    from e2llm_offline.common import sha256_file
    from e2llm_offline.export import export_adapter

    source = Path(os.environ.get("E2LLM_MODELS", ROOT / "models" / "default"))
    manifest = json.loads((source / "manifest.json").read_text())
    folder = work / "models" / source.name
    folder.mkdir(parents=True)
    if (source.parent / "runtime").is_dir():  # ONNX Runtime is looked up beside the models folder
        (folder.parent / "runtime").symlink_to((source.parent / "runtime").resolve())
    for name in manifest["files"]:
        if name != "adapter.onnx":
            (folder / name).symlink_to((source / name).resolve())
    entry = export_adapter(adapter, folder, manifest["encoder"]["dim"], manifest["decoder"]["hidden"],
                           manifest["encoder"]["fingerprint"], manifest["decoder"]["fingerprint"],
                           lambda message: print(message, file=sys.stderr))
    if entry is None:
        raise SystemExit(f"{adapter} was not trained for the encoder and decoder in {source}")
    manifest["adapter"] = entry
    manifest["files"]["adapter.onnx"] = sha256_file(folder / "adapter.onnx")
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return folder


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--limit", type=int, default=200)
    parser.add_argument("--recon", type=int, default=60)
    parser.add_argument("--max-new-tokens", type=int, default=32)
    parser.add_argument("--modes", nargs="*", default=MODES)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--adapter", type=Path,
                        help="adapter weights (safetensors from make train) to evaluate instead of the models' own")
    parser.add_argument("--baseline-models", type=Path,
                        help="also answer every question with this models folder (e.g. the previous release) and "
                             "report new - baseline per mode (paired bootstrap of EM, F1, contained)")
    parser.add_argument("--limit-mode", nargs="*", default=[], metavar="MODE=N",
                        help="fewer questions for some modes (e.g. full=100), the same for the baseline")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    limits = {k: int(v) for k, v in (item.split("=", 1) for item in args.limit_mode)}
    report: dict = {"modes": {}, "limit": args.limit, "limits": limits, "max_new_tokens": args.max_new_tokens}
    per_question: dict[str, list[dict]] = {}
    baseline: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if args.adapter:
            os.environ["E2LLM_MODELS"] = str(models_with_adapter(args.adapter, work))
            report["adapter"] = str(args.adapter)
        for mode in args.modes:
            limit = limits.get(mode, args.limit)
            summary, rows = run_eval(DATA / "eval.db", DATA / "eval_qa.jsonl", mode, args.max_new_tokens,
                                     work / f"{mode}.jsonl", limit)
            report["modes"][mode] = summary
            per_question[mode] = rows
            print(json.dumps(summary), flush=True)
            if args.baseline_models:
                models = os.environ.get("E2LLM_MODELS")
                os.environ["E2LLM_MODELS"] = str(args.baseline_models.resolve())
                try:
                    summary, rows = run_eval(DATA / "eval.db", DATA / "eval_qa.jsonl", mode, args.max_new_tokens,
                                             work / f"{mode}-baseline.jsonl", limit)
                finally:
                    if models is None:
                        os.environ.pop("E2LLM_MODELS")
                    else:
                        os.environ["E2LLM_MODELS"] = models
                report.setdefault("baseline", {"models": str(args.baseline_models), "modes": {}})["modes"][mode] = summary
                baseline[mode] = rows
                print("baseline", json.dumps(summary), flush=True)
            (args.out / "adapter_eval.json").write_text(json.dumps(report, indent=2))
        metric = lambda rows, key: np.array([r[key] for r in rows])  # noqa: E731
        keys = ("exact_match", "f1", "contained")
        report["bootstrap"] = {}
        for a, b in (("compressed", "question-only"), ("hybrid", "rag"), ("compressed", "rag"), ("hybrid", "full"),
                     ("rag", "full")):
            if a in per_question and b in per_question:
                n = min(len(per_question[a]), len(per_question[b]))  # a mode with fewer questions: its first n
                report["bootstrap"][f"{a} - {b}"] = {key: paired_bootstrap(metric(per_question[a][:n], key),
                                                                           metric(per_question[b][:n], key))
                                                     for key in keys}
        for mode, rows in baseline.items():
            report["bootstrap"][f"{mode}: new - baseline"] = {
                key: paired_bootstrap(metric(per_question[mode], key), metric(rows, key)) for key in keys}
        report["rows"] = {mode: [{k: r[k] for k in ("prediction", *keys)} for r in rows]
                          for mode, rows in per_question.items()}
        if args.recon:
            report["reconstruction"] = reconstruction(work, args.recon, seed=0)
        report["examples"] = [{"question": per_question[args.modes[0]][i]["question"],
                               "answers": per_question[args.modes[0]][i]["answers"],
                               **{m: per_question[m][i]["prediction"] for m in args.modes}} for i in range(5)]
    (args.out / "adapter_eval.json").write_text(json.dumps(report, indent=2))
    write_markdown(report, args.out / "adapter_eval.md")
    print((args.out / "adapter_eval.md").read_text())


def bootstrap_lines(bootstrap: dict) -> list[str]:
    """A Markdown table of paired bootstrap results ({comparison: {metric: paired_bootstrap(...)}})."""
    lines = ["Paired bootstrap over questions (10,000 resamples): mean difference, 95% interval, and the share of "
             "resamples where the first mode is not better.", "",
             "| comparison | metric | mean difference | 95% interval | P(not better) |", "|---|---|---|---|---|"]
    for name, metrics in bootstrap.items():
        for key, b in metrics.items():
            lines.append(f"| {name} | {key} | {b['mean_difference']:+.3f} | [{b['ci95'][0]:+.3f}, {b['ci95'][1]:+.3f}] | "
                         f"{b['p_not_better']:.3f} |")
    return lines


def example_lines(report: dict) -> list[str]:
    """Markdown lines: each example question, its gold answer and every mode's prediction."""
    lines = []
    for ex in report.get("examples", []):
        lines.append(f"- **{ex['question']}** (gold: {ex['answers'][0]})")
        lines += [f"  - {mode}: {ex[mode]!r}" for mode in report["modes"]]
    return lines


def write_markdown(report: dict, path: Path) -> None:
    lines = ["# Adapter evaluation on held-out HotpotQA", "",
             "`bench/eval_adapter.py`: questions from the committed held-out split "
             "(`onnx/data/hotpotqa_heldout_ids.txt`, never trained on); each question's paragraphs are its document. "
             f"Greedy decoding, at most {report['max_new_tokens']} new tokens."
             + (f" Adapter: `{report['adapter']}` (not the models folder's own)." if "adapter" in report else "")
             + (f" Fewer questions for: {report['limits']}." if report.get("limits") else ""), "",
             "| mode | questions | exact match | F1 | answer contained | decoder input tokens (mean) | time to first token p50 (ms) |",
             "|---|---|---|---|---|---|---|"]
    for mode, s in report["modes"].items():
        lines.append(f"| {mode} | {s['questions']} | {s['exact_match']:.3f} | {s['f1']:.3f} | {s['contained']:.3f} | "
                     f"{s['mean_prompt_tokens']:.0f} | {s['ttft_ms_p50']:.0f} |")
    if "baseline" in report:
        lines += ["", f"Baseline (`{report['baseline']['models']}`), the same questions:", "",
                  "| mode | questions | exact match | F1 | answer contained | decoder input tokens (mean) | time to first token p50 (ms) |",
                  "|---|---|---|---|---|---|---|"]
        for mode, s in report["baseline"]["modes"].items():
            lines.append(f"| {mode} | {s['questions']} | {s['exact_match']:.3f} | {s['f1']:.3f} | {s['contained']:.3f} | "
                         f"{s['mean_prompt_tokens']:.0f} | {s['ttft_ms_p50']:.0f} |")
    lines += ["", *bootstrap_lines(report.get("bootstrap", {}))]
    if "reconstruction" in report:
        r = report["reconstruction"]
        lines += ["", "## Reconstruction (understanding task)", "",
                  f"{r['chunks']} held-out chunks, each compressed alone to one vector, regenerated with the training prompt: "
                  f"token F1 **{r['token_f1']:.3f}** against the original text (exact match {r['exact_match']:.3f}).", ""]
        for ex in r["examples"]:
            lines += [f"- original: {ex['original'][:200]!r}", f"  regenerated: {ex['regenerated'][:200]!r}"]
    lines += ["", "## Examples", "", *example_lines(report)]
    path.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
