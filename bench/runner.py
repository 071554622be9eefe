"""Running the e2llm binary from the evaluation scripts (niah.py, eval_adapter.py, eval.py)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(os.environ.get("E2LLM_BIN", ROOT / "target" / "release" / "e2llm"))


def run(args: list[str]) -> subprocess.CompletedProcess:
    """Runs `e2llm ARGS`; raises with its stderr when it fails."""
    result = subprocess.run([str(BIN), *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"e2llm {' '.join(args)}: {result.stderr}")
    return result


def compress(db: Path, docs: Path, *extra: str) -> dict:
    """Compresses a JSONL file of documents into `db` (unchanged documents are skipped); the summary."""
    return json.loads(run(["compress", "--db", str(db), str(docs), "--json", *extra]).stdout)


def run_eval(db: Path, questions: Path, mode: str, max_new_tokens: int, out: Path, limit: int | None = None,
             extra: tuple[str, ...] = ()) -> tuple[dict, list[dict]]:
    """`e2llm eval` of one mode: its summary and the per-question rows (JSONL written to `out`)."""
    args = ["eval", "--db", str(db), "--questions", str(questions), "--mode", mode, "--json",
            "--max-new-tokens", str(max_new_tokens), "--out", str(out), *extra]
    if limit:
        args += ["--limit", str(limit)]
    summary = json.loads(run(args).stdout)
    return summary, [json.loads(line) for line in out.read_text().splitlines()]
