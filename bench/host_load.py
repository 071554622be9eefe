"""A multi-threaded host: one process, 4 SQLite connections, 8 threads asking 10 questions each through
`e2llm_ask` (a web app's thread pool), against the same 80 questions asked by one thread.

Checks 0 errors and answers identical to the single-threaded run; reports throughput (questions/s) and
p50/p95 latency of each. Models load once per process (a warm-up question before either run). Python's
sqlite3 releases the GIL while a statement runs, so the threads really are concurrent in the extension.

    eval "$(make -s env)"; /usr/bin/python3 bench/host_load.py [--threads 8] [--questions 10] [--connections 4]

Standard library only: it needs a Python whose sqlite3 loads extensions (Debian's; the project venv's
pyenv Python cannot), so of the other bench modules it imports only metrics (standard library too).

Writes reports/host_load.json and reports/host_load.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from metrics import percentile

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("E2LLM_BIN", ROOT / "target" / "release" / "e2llm"))
EXTENSION = ROOT / "target" / "release" / "libe2llm.so"
DOCS = ["1941-Roosevelt-1.txt", "1790-Washington-1.txt", "1823-Monroe-1.txt", "2002-Bush-1.txt"]
QUESTIONS = [
    "Who is being addressed?", "In what year was this address given?", "What is the main subject of the address?",
    "Which countries are mentioned?", "What does the president ask Congress to do?", "What threat is described?",
    "What is said about the economy?", "Which freedoms are mentioned?", "What is said about the army?",
    "How does the address end?",
]


def progress(message: str) -> None:
    print(f"[host_load {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def connect(db: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db, check_same_thread=False)  # shared by two threads: SQLite serialises it
    conn.enable_load_extension(True)
    conn.load_extension(str(EXTENSION))
    conn.enable_load_extension(False)
    return conn


def jobs(threads: int, questions: int) -> list[list[tuple[str, str]]]:
    """Per thread, its (doc, question) list: every thread a different mix of documents and questions."""
    return [[(DOCS[(t + i) % len(DOCS)], QUESTIONS[(t * 3 + i) % len(QUESTIONS)]) for i in range(questions)]
            for t in range(threads)]


def ask(conn: sqlite3.Connection, doc: str, question: str, options: str) -> tuple[str, float]:
    began = time.perf_counter()
    answer = conn.execute("SELECT e2llm_ask(?, ?, ?)", (doc, question, options)).fetchone()[0]
    return answer, (time.perf_counter() - began) * 1e3


def summary(latencies: list[float], wall: float, errors: list[str]) -> dict:
    return {"questions": len(latencies), "errors": len(errors), "error_messages": errors[:5], "wall_s": wall,
            "questions_per_s": len(latencies) / wall if wall else 0.0,
            "p50_ms": percentile(latencies, 0.5), "p95_ms": percentile(latencies, 0.95)}


def run_single(conns: list[sqlite3.Connection], work: list[list[tuple[str, str]]], options: str):
    answers, latencies, errors = {}, [], []
    began = time.perf_counter()
    for t, items in enumerate(work):
        for i, (doc, question) in enumerate(items):
            try:
                answers[(t, i)], ms = ask(conns[0], doc, question, options)
                latencies.append(ms)
            except sqlite3.Error as e:
                errors.append(str(e))
    return answers, summary(latencies, time.perf_counter() - began, errors)


def run_threads(conns: list[sqlite3.Connection], work: list[list[tuple[str, str]]], options: str):
    answers, latencies, errors = {}, [], []
    lock = threading.Lock()
    start = threading.Barrier(len(work))

    def worker(t: int) -> None:
        conn = conns[t % len(conns)]
        start.wait()
        for i, (doc, question) in enumerate(work[t]):
            try:
                answer, ms = ask(conn, doc, question, options)
                with lock:
                    answers[(t, i)] = answer
                    latencies.append(ms)
            except sqlite3.Error as e:
                with lock:
                    errors.append(str(e))

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(len(work))]
    began = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers, summary(latencies, time.perf_counter() - began, errors)


def render(report: dict) -> str:
    one, many = report["single"], report["threaded"]
    lines = ["# Many threads in one host process", "",
             f"`bench/host_load.py`: {report['threads']} threads x {report['questions']} questions over "
             f"{report['connections']} connections in one Python process (`sqlite3` + the loadable extension), "
             f"against the same {one['questions']} questions asked by one thread on one connection. "
             f"Mode `{report['mode']}`, at most {report['max_new_tokens']} new tokens, {report['cpus']} CPUs; "
             "models loaded once, before both runs.", "",
             "| run | questions | errors | questions/s | p50 latency (ms) | p95 latency (ms) |", "|---|---|---|---|---|---|"]
    for name, row in (("1 thread", one), (f"{report['threads']} threads", many)):
        lines.append(f"| {name} | {row['questions']} | {row['errors']} | {row['questions_per_s']:.2f} | "
                     f"{row['p50_ms']:.0f} | {row['p95_ms']:.0f} |")
    lines += ["", f"Answers identical to the single-threaded run: **{report['identical']} of {one['questions']}**; "
              f"throughput {many['questions_per_s'] / one['questions_per_s']:.2f}x of one thread.", "",
              "The models are shared: one encoder and one decoder session per process, each run by all of the "
              "machine's cores for one question at a time. Concurrent questions therefore queue for the "
              "decoder (latency grows with the queue, throughput stays that of one thread); nothing deadlocks "
              "and no reader sees \"database is locked\" (reads only, WAL).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--questions", type=int, default=10, help="per thread")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--mode", default="hybrid")
    parser.add_argument("--max-new-tokens", type=int, default=16)
    parser.add_argument("--out", type=Path, default=ROOT / "reports")
    args = parser.parse_args()
    if not EXTENSION.is_file():
        raise SystemExit(f"{EXTENSION} not built: run `make ext`")
    options = json.dumps({"mode": args.mode, "max_new_tokens": args.max_new_tokens})
    work = jobs(args.threads, args.questions)
    with tempfile.TemporaryDirectory() as tmp:
        docs = Path(tmp) / "docs"
        docs.mkdir()
        for name in DOCS:
            (docs / name).write_text((ROOT / "examples" / "sotu" / name).read_text())
        db = Path(tmp) / "docs.db"
        subprocess.run([str(BIN), "compress", "--db", str(db), str(docs)], check=True, capture_output=True)
        conns = [connect(db) for _ in range(args.connections)]
        ask(conns[0], DOCS[0], QUESTIONS[0], options)  # loads the models
        progress("one thread")
        single_answers, single = run_single(conns, work, options)
        progress(f"{args.threads} threads")
        threaded_answers, threaded = run_threads(conns, work, options)
    identical = sum(threaded_answers.get(key) == answer for key, answer in single_answers.items())
    report = {"threads": args.threads, "questions": args.questions, "connections": args.connections,
              "mode": args.mode, "max_new_tokens": args.max_new_tokens, "cpus": os.cpu_count(),
              "single": single, "threaded": threaded, "identical": identical}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "host_load.json").write_text(json.dumps(report, indent=1) + "\n")
    (args.out / "host_load.md").write_text(render(report))
    print(render(report))
    if threaded["errors"] or single["errors"] or identical != len(single_answers):
        raise SystemExit("host load: errors or answers that differ from the single-threaded run (see above)")


if __name__ == "__main__":
    main()
