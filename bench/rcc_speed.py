"""RCC's costs next to the vector-only modes, one run, side by side: compress chunks/s and stored bytes
per source token with and without `--rcc`, and `ask` time to first token (a first and a repeated
question, prefix cache) and peak RSS at several document lengths for rcc, compressed and hybrid.

    .venv/bin/python bench/rcc_speed.py [--tokens 8000 32000 128000] [--runs 3]

Writes reports/rcc_speed.md and .json. Needs `make setup` with RCC weights.
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import tempfile
from pathlib import Path

from bench import bench_ask, progress, run_json, speeches
from metrics import median

ROOT = Path(__file__).resolve().parents[1]


def compress_costs(work: Path, runs: int, count: int) -> dict:
    """The same `count` addresses compressed with and without --rcc (fresh databases, `runs` each)."""
    corpus = work / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": n, "text": t}) + "\n" for n, t in speeches(count, skip=100)))
    out = {}
    for label, extra in (("vectors", []), ("rcc", ["--rcc"])):
        rates = []
        for run in range(runs):
            db = work / f"{label}-{run}.db"
            progress(f"compress {label}, run {run + 1} of {runs}")
            summary, peak = run_json(["compress", "--db", str(db), str(corpus), "--json", "--threads", "2", *extra])
            rates.append(summary["chunks_per_second"])
        con = sqlite3.connect(db)
        vector, text = con.execute("SELECT sum(length(vector)), sum(length(CAST(text AS BLOB))) FROM chunks").fetchone()
        memory = con.execute("SELECT coalesce(sum(length(memory)), 0) FROM chunk_memory").fetchone()[0]
        tokens = summary["tokens"]
        out[label] = {"chunks": summary["chunks"], "encoder_tokens": tokens, "chunks_per_second": median(rates),
                      "runs": rates, "peak_rss_mib": peak / 1024, "text_bytes_per_token": text / tokens,
                      "vector_bytes_per_token": vector / tokens, "memory_bytes_per_token": memory / tokens}
    out["slowdown"] = out["vectors"]["chunks_per_second"] / out["rcc"]["chunks_per_second"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, nargs="*", default=[8000, 32000, 128000])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--speeches", type=int, default=2, help="addresses compressed with and without --rcc")
    parser.add_argument("--modes", nargs="*", default=["rcc", "compressed", "hybrid"])
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    report = {"runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report["compress"] = compress_costs(work, args.runs, args.speeches)
        report["ask"] = {str(n): bench_ask(work, n, args.modes, args.runs, repeat=True) for n in args.tokens}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "rcc_speed.json").write_text(json.dumps(report, indent=2))
    c = report["compress"]
    lines = ["# RCC costs", "", f"`bench/rcc_speed.py --runs {args.runs}`, 2 threads, one run of the script (side by side).", "",
             f"## Compress ({args.speeches} State of the Union addresses, {c['rcc']['chunks']} chunks)", "",
             "| | chunks/s (median) | text B/token | vector B/token | RCC memory B/token | peak RSS (MiB) |", "|---|---|---|---|---|---|"]
    for label in ("vectors", "rcc"):
        r = c[label]
        lines.append(f"| {label} | {r['chunks_per_second']:.1f} | {r['text_bytes_per_token']:.1f} | "
                     f"{r['vector_bytes_per_token']:.1f} | {r['memory_bytes_per_token']:.0f} | {r['peak_rss_mib']:.0f} |")
    lines += ["", f"`--rcc` compresses {c['slowdown']:.0f}x slower (the RCC encoder is the 135M decoder, run on every "
              "chunk's decoder tokens).", "", "## Ask", "",
              "| document (encoder tokens) | mode | decoder input positions | first question TTFT (ms) | repeated question TTFT (ms) | peak RSS (MiB) |",
              "|---|---|---|---|---|---|"]
    for n, res in report["ask"].items():
        for mode, m in res["modes"].items():
            if "error" in m:
                lines.append(f"| {res['encoder_tokens']:,} | {mode} | — | {m['error']} | | |")
                continue
            rep = res["repeat"].get(mode, {})
            second = f"{rep['second_ttft_ms']:.0f}" if rep else "—"
            lines.append(f"| {res['encoder_tokens']:,} | {mode} | {m['prompt_tokens']} | {m['ttft_ms']:.0f} | {second} | "
                         f"{m['peak_rss_mib']:.0f} |")
    (args.out / "rcc_speed.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
