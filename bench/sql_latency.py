"""SQL latency: the first `e2llm_ask` in a process (loads the models), later calls (models loaded),
and a repeated question on one document with `max_new_tokens: 1` (prefix KV cache).
Standard library only; needs a Python whose sqlite3 can load extensions (Debian's /usr/bin/python3).

    eval "$(make -s env)"; /usr/bin/python3 bench/sql_latency.py data/demo.db target/release/libe2llm [--runs 3]

Prints one JSON object; each run is a fresh process.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from metrics import median

ONE_RUN = r"""
import json, sqlite3, sys, time
db, ext, doc = sys.argv[1:4]
con = sqlite3.connect(db)
con.enable_load_extension(True)
con.load_extension(ext)
def ask(question, options):
    started = time.perf_counter()
    answer = json.loads(con.execute("SELECT e2llm_ask_json(?, ?, ?)", (doc, question, json.dumps(options))).fetchone()[0])
    return {"wall_ms": (time.perf_counter() - started) * 1e3, "ttft_ms": answer["ttft_ms"],
            "load_ms": answer["load_ms"], "hit": answer["prefix_cache_hit"]}
first = ask("Which Congress is addressed?", {"mode": "rag", "max_new_tokens": 16})
later = ask("What are the four freedoms?", {"mode": "rag", "max_new_tokens": 16})
cold = ask("Which Congress is addressed?", {"mode": "full", "max_new_tokens": 1})
warm = ask("What are the four freedoms?", {"mode": "full", "max_new_tokens": 1})
print(json.dumps({"first": first, "later": later, "full_first": cold, "full_repeat": warm}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("db")
    parser.add_argument("extension")
    parser.add_argument("--doc", default="1941-Roosevelt-1.txt")
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for _ in range(args.runs):
        out = subprocess.run([sys.executable, "-c", ONE_RUN, args.db, args.extension, args.doc],
                             capture_output=True, text=True, check=True)
        runs.append(json.loads(out.stdout))
    middle = lambda key, field: median(r[key][field] for r in runs)  # noqa: E731
    print(json.dumps({
        "runs": args.runs,
        "first_call_wall_ms": middle("first", "wall_ms"), "first_call_load_ms": middle("first", "load_ms"),
        "later_call_wall_ms": middle("later", "wall_ms"),
        "full_first_ttft_ms": middle("full_first", "ttft_ms"), "full_repeat_ttft_ms": middle("full_repeat", "ttft_ms"),
        "full_repeat_hit": all(r["full_repeat"]["hit"] for r in runs),
    }, indent=1))


if __name__ == "__main__":
    main()
