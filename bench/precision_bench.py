"""float32 against the quantised CPU variants, and the decoder against llama.cpp on the same GGUF.

One run, side by side, 2 threads, medians of `--runs`:
- compress chunks/s with `--precision fp32` and `--precision quantized` (alternating runs);
- the decoder: prefill tokens/s at about 512 / 2K / 8K prompt tokens (`ask --mode full`, time to first
  token) and decode tokens/s (the tokens after the first), for e2llm fp32 and quantized, and for
  llama.cpp (llama-cpp-python, built in its own venv by `make bench`) reading the *same token ids*
  (`ask --show-prompt`) from the source GGUF (Q4_1) with the same threads;
- `ask --mode compressed` in a fresh process: model loading, time to the answer and peak RSS, per precision,
  and the same through SQL (`sqlite3` with the loadable extension) for the first answer of a process.

    .venv/bin/python bench/precision_bench.py [--runs 3] [--threads 2] [--llama-python .venv-llama/bin/python]

Writes reports/precision.json and reports/precision.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench import BIN, MODELS, ROOT, progress, run_json, speeches
from metrics import median, median_spread

PRECISIONS = ["fp32", "quantized"]
PROMPT_SIZES = [512, 2048, 8000]  # decoder tokens (8K: the window less the question and the answer)
QUESTION = "Summarise what the president said, in detail."
WORDS_PER_DECODER_TOKEN = 0.75


def bench_compress(workdir: Path, runs: int, threads: int, count: int) -> dict:
    docs = workdir / "compress"
    docs.mkdir()
    for name, text in speeches(count, skip=40):
        (docs / name).write_text(text)
    rates: dict[str, list[float]] = {p: [] for p in PRECISIONS}
    chunks = 0
    for run in range(runs):
        for precision in PRECISIONS:
            db = workdir / f"compress-{precision}-{run}.db"
            summary, _ = run_json(["compress", "--db", str(db), str(docs), "--json", "--threads", str(threads),
                                   "--precision", precision])
            assert summary["precision"] == precision, summary
            rates[precision].append(summary["chunks_per_second"])
            chunks = summary["chunks"]
            progress(f"compress {precision} run {run + 1}: {summary['chunks_per_second']:.1f} chunks/s")
    return {"chunks": chunks, "documents": count,
            **{p: median_spread(v) for p, v in rates.items()},
            "speedup": median(rates["quantized"]) / median(rates["fp32"])}


def document(workdir: Path, decoder_tokens: int) -> Path:
    """A document of about `decoder_tokens` decoder tokens, compressed into its own database (its id
    there is the path)."""
    words = []
    for _, text in speeches(80, skip=120):
        words += text.split()
        if len(words) * 1.0 >= decoder_tokens * WORDS_PER_DECODER_TOKEN:
            break
    path = workdir / f"doc{decoder_tokens}.txt"
    path.write_text(" ".join(words[: int(decoder_tokens * WORDS_PER_DECODER_TOKEN)]))
    run_json(["compress", "--db", str(workdir / f"doc{decoder_tokens}.db"), str(path), "--json",
              "--precision", "fp32"])
    return path


def e2llm_decoder(doc: Path, precision: str, threads: int, new_tokens: int) -> tuple[dict, list[int]]:
    db = doc.with_suffix(".db")
    answer, peak = run_json(["ask", "--db", str(db), "--doc", str(doc), "--mode", "full", "--json", "--show-prompt",
                             "--multiline", "--max-new-tokens", str(new_tokens), "--threads", str(threads),
                             "--precision", precision, QUESTION])
    ids = [t for piece in answer["prompt"] for t in piece.get("tokens", [])]
    if len(ids) != answer["prompt_tokens"]:
        raise RuntimeError(f"--show-prompt gave {len(ids)} ids for {answer['prompt_tokens']} prompt tokens")
    decode_s = (answer["total_ms"] - answer["ttft_ms"]) / 1000
    return {"prompt_tokens": answer["prompt_tokens"], "prefill_tokens_per_s": answer["prompt_tokens"] / answer["ttft_ms"] * 1000,
            "generated": answer["generated_tokens"],
            "decode_tokens_per_s": (answer["generated_tokens"] - 1) / decode_s if answer["generated_tokens"] > 1 else None,
            "peak_rss_mib": peak / 1024}, ids


def llama_cpp(python: str, gguf: Path, ids: list[int], threads: int, new_tokens: int) -> dict:
    """Prefill and decode speed of llama.cpp on `ids` (bench/llama_cpp_speed.py in its own venv)."""
    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump(ids, f)
        f.flush()
        out = subprocess.run([python, str(ROOT / "bench" / "llama_cpp_speed.py"), str(gguf), f.name, str(threads),
                              str(new_tokens)], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"llama_cpp_speed.py failed: {out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def bench_decoder(workdir: Path, runs: int, threads: int, new_tokens: int, llama_python: str | None) -> dict:
    manifest = json.loads((MODELS / "manifest.json").read_text())
    sys.path.insert(0, str(ROOT / "onnx"))
    from e2llm_offline.common import default_decoder_gguf

    gguf = default_decoder_gguf()
    report = {"gguf": gguf.name, "decoder_source": manifest["decoder"]["source"], "sizes": {}}
    for size in PROMPT_SIZES:
        doc = document(workdir, size)
        samples: dict[str, list[dict]] = {p: [] for p in [*PRECISIONS, *(["llama.cpp"] if llama_python else [])]}
        for run in range(runs):
            for precision in PRECISIONS:
                row, ids = e2llm_decoder(doc, precision, threads, new_tokens)
                samples[precision].append(row)
                progress(f"decoder {precision} at {row['prompt_tokens']} tokens, run {run + 1}: prefill "
                         f"{row['prefill_tokens_per_s']:.0f} tok/s, decode {row['decode_tokens_per_s'] or 0:.1f} tok/s")
            if llama_python:
                row = llama_cpp(llama_python, gguf, ids, threads, new_tokens)
                samples["llama.cpp"].append(row)
                progress(f"llama.cpp at {row['prompt_tokens']} tokens, run {run + 1}: prefill "
                         f"{row['prefill_tokens_per_s']:.0f} tok/s, decode {row['decode_tokens_per_s']:.1f} tok/s")
        report["sizes"][str(size)] = {
            engine: {"prompt_tokens": rows[0]["prompt_tokens"],
                     "prefill_tokens_per_s": median_spread([r["prefill_tokens_per_s"] for r in rows]),
                     "decode_tokens_per_s": median_spread([r["decode_tokens_per_s"] for r in rows
                                                           if r["decode_tokens_per_s"]] or [0.0]),
                     "generated": median(r["generated"] for r in rows),
                     **({"peak_rss_mib": median(r["peak_rss_mib"] for r in rows)}
                        if "peak_rss_mib" in rows[0] else {})}
            for engine, rows in samples.items()}
    return report


def bench_first_answer(workdir: Path, runs: int, threads: int) -> dict:
    """`ask --mode compressed` and `SELECT e2llm_ask(...)` in fresh processes, per precision."""
    doc = workdir / "doc2048.txt"
    if not doc.exists():  # bench_decoder made it unless its sizes changed
        doc = document(workdir, 2048)
    db = doc.with_suffix(".db")
    extension = ROOT / "target" / "release" / "libe2llm"
    out: dict = {}
    for precision in PRECISIONS:
        cli, sql = [], []
        for _ in range(runs):
            answer, peak = run_json(["ask", "--db", str(db), "--doc", str(doc), "--mode", "compressed", "--json",
                                     "--threads", str(threads), "--precision", precision, "Who is mentioned first?"])
            cli.append({"load_ms": answer["load_ms"], "ttft_ms": answer["ttft_ms"], "total_ms": answer["total_ms"],
                        "peak_rss_mib": peak / 1024})
            env = dict(os.environ, E2LLM_MODELS=str(MODELS), E2LLM_PRECISION=precision)  # SQL: all cores
            began = time.perf_counter()
            result = subprocess.run(["sqlite3", str(db), f".load {extension}",
                                     f"SELECT e2llm_ask('{doc}', 'Who is mentioned first?', "
                                     "'{\"mode\":\"compressed\"}');"], capture_output=True, text=True, env=env)
            if result.returncode != 0 or not result.stdout.strip():
                raise RuntimeError(f"sqlite3 e2llm_ask failed: {result.stderr}")
            sql.append((time.perf_counter() - began) * 1000)
        out[precision] = {key: median(r[key] for r in cli) for key in cli[0]}
        out[precision]["sql_first_answer_ms"] = median_spread(sql)
        progress(f"first answer {precision}: {out[precision]}")
    return out


def render(report: dict) -> str:
    c = report["compress"]
    lines = ["# Precision: float32 vs the quantised CPU variants, and llama.cpp", "",
             f"`bench/precision_bench.py --runs {report['runs']} --threads {report['threads']}` "
             f"({report['cpus']} CPUs): medians of {report['runs']} runs, [min, max], measured side by side in one run.",
             "", "## Compress", "",
             f"{c['chunks']} chunks from {c['documents']} State of the Union addresses, {report['threads']} threads.", "",
             "| precision | chunks/s |", "|---|---|"]
    for p in PRECISIONS:
        lines.append(f"| {p} | {c[p]['median']:.1f} [{c[p]['min']:.1f}, {c[p]['max']:.1f}] |")
    lines += ["", f"quantized / fp32: **{c['speedup']:.2f}x**", "", "## Decoder: prefill and decode", "",
              f"`ask --mode full` (e2llm) and llama-cpp-python on the same prompt token ids; llama.cpp reads "
              f"`{report['decoder']['gguf']}` (Q4_1), e2llm the exported decoder "
              f"({report['decoder']['decoder_source']}). Decode: tokens after the first, up to {report['new_tokens']}.",
              "", "| prompt tokens | engine | prefill tokens/s | decode tokens/s | peak RSS (MiB) |", "|---|---|---|---|---|"]
    for size in report["decoder"]["sizes"].values():
        for engine, row in size.items():
            p, d = row["prefill_tokens_per_s"], row["decode_tokens_per_s"]
            rss = f"{row['peak_rss_mib']:.0f}" if "peak_rss_mib" in row else ""
            lines.append(f"| {row['prompt_tokens']} | {engine} | {p['median']:.0f} [{p['min']:.0f}, {p['max']:.0f}] | "
                         f"{d['median']:.1f} [{d['min']:.1f}, {d['max']:.1f}] | {rss} |")
    f = report["first_answer"]
    lines += ["", "## First answer in a fresh process (`--mode compressed`)", "",
              "| precision | model loading (ms) | time to first token (ms) | peak RSS (MiB) | SQL: `sqlite3` + `.load` + `e2llm_ask` (ms) |",
              "|---|---|---|---|---|"]
    for p in PRECISIONS:
        s = f[p]["sql_first_answer_ms"]
        lines.append(f"| {p} | {f[p]['load_ms']:.0f} | {f[p]['ttft_ms']:.0f} | {f[p]['peak_rss_mib']:.0f} | "
                     f"{s['median']:.0f} [{s['min']:.0f}, {s['max']:.0f}] |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--speeches", type=int, default=12, help="documents for the compress comparison")
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--llama-python", help="python of a venv with llama-cpp-python (none: e2llm only)")
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    if not BIN.is_file():
        raise SystemExit(f"{BIN} not built: run `make setup`")
    report = {"runs": args.runs, "threads": args.threads, "cpus": os.cpu_count(), "new_tokens": args.new_tokens,
              "binary": str(BIN)}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        report["compress"] = bench_compress(work, args.runs, args.threads, args.speeches)
        report["decoder"] = bench_decoder(work, args.runs, args.threads, args.new_tokens, args.llama_python)
        report["first_answer"] = bench_first_answer(work, args.runs, args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "precision.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "precision.md").write_text(render(report))
    print(render(report))


if __name__ == "__main__":
    main()
