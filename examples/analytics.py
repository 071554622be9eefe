"""Analytics over an e2llm Parquet export with DuckDB: chunks per document, and the chunks nearest
to a question (cosine similarity computed in SQL over the FixedSizeList vectors).

    e2llm export --db data/demo.db --out data/demo.parquet
    .venv/bin/python examples/analytics.py data/demo.parquet "What did the president say about taxes?"
"""

import json
import subprocess
import sys

import duckdb


def question_vector(question: str, e2llm: str = "target/release/e2llm") -> list[float]:
    """The question's encoder vector, from the same encoder that made the stored vectors."""
    out = subprocess.run([e2llm, "embed", question], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.splitlines()[0])


def main(parquet: str, question: str, e2llm: str = "target/release/e2llm") -> None:
    con = duckdb.connect()
    con.read_parquet(parquet).create_view("chunks")
    dim = con.execute("SELECT array_length(vector) FROM chunks LIMIT 1").fetchone()[0]
    print("chunks per document:")
    for doc_id, n, tokens in con.execute(
        "SELECT doc_id, count(*), max(doc_tokens) FROM chunks GROUP BY doc_id ORDER BY doc_id"
    ).fetchall():
        print(f"  {doc_id:32} {n:5} chunks {tokens:7} tokens")
    query = question_vector(question, e2llm)
    print(f"\nnearest chunks to {question!r}:")
    rows = con.execute(
        # Parquet has no fixed-size list type: DuckDB reads the vectors as FLOAT[] and they are cast back.
        f"SELECT doc_id, seq, array_cosine_similarity(vector::FLOAT[{dim}], ?::FLOAT[{dim}]) AS score, text "
        "FROM chunks ORDER BY score DESC LIMIT 5",
        [query],
    ).fetchall()
    for doc_id, seq, score, text in rows:
        print(f"  {score:.3f} {doc_id}#{seq}: {' '.join(text.split())[:100]}")


if __name__ == "__main__":
    main(*sys.argv[1:])
