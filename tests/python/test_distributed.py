"""The PySpark example maps `e2llm compress --out` over 4 Parquet shards, and `e2llm import` loads
the results: the database holds every document, exactly as a single-machine run would.

Exactly means: same documents, chunks and offsets, and vectors as batch-invariant as the encoder variant
is. The float32 graph gives a chunk the same vector whatever its batch neighbours (to 1e-5); the quantised
graph scales its int8 activations per call, so a vector moves slightly with its batch (cosine >= 0.99, the
contract onnx/e2llm_offline/quantize.py documents)."""

import json
import os
import sqlite3
import subprocess
import sys

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import BIN, CORPUS, MODELS, ROOT


@pytest.mark.parametrize("precision", ["fp32", "quantized"])
def test_spark_compresses_shards_and_import_merges_them(e2llm, tmp_path, monkeypatch, precision):
    monkeypatch.setenv("E2LLM_PRECISION", precision)
    shards = tmp_path / "shards"
    shards.mkdir()
    files = sorted(CORPUS.iterdir())
    for i in range(4):
        part = files[i::4]
        table = pa.table({"id": [f.name for f in part], "text": [f.read_text() for f in part]})
        pq.write_table(table, shards / f"shard-{i}.parquet")
    db = tmp_path / "all.db"
    env = dict(os.environ, E2LLM_MODELS=str(MODELS))
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "distributed_spark.py"), "--shards", str(shards),
         "--out", str(tmp_path / "vectors"), "--db", str(db), "--binary", str(BIN)],
        capture_output=True, text=True, env=env, timeout=600,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads([line for line in result.stdout.splitlines() if line.startswith("{")][-1])
    print(report)
    assert report["shards"] == 4 and report["failed"] == 0

    # Same documents, chunks and vectors as one machine compressing the same inputs into a database.
    # Vectors agree to the variant's batch invariance, not bit for bit: the batches hold other neighbours.
    single = tmp_path / "single.db"
    e2llm("compress", "--db", single, *[shards / f"shard-{i}.parquet" for i in range(4)])
    query = ("SELECT doc_id, seq, text, token_start, token_end, byte_start, byte_end, vector "
             "FROM chunks ORDER BY doc_id, seq")
    with sqlite3.connect(db) as a, sqlite3.connect(single) as b:
        assert a.execute("SELECT count(*) FROM documents").fetchone()[0] == len(files)
        rows_a, rows_b = a.execute(query).fetchall(), b.execute(query).fetchall()
    assert [r[:-1] for r in rows_a] == [r[:-1] for r in rows_b]
    va = np.stack([np.frombuffer(r[-1], "<f4") for r in rows_a])
    vb = np.stack([np.frombuffer(r[-1], "<f4") for r in rows_b])
    if precision == "fp32":
        assert np.abs(va - vb).max() < 1e-5
    else:
        cosine = (va * vb).sum(1) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)
        print(f"smallest cosine between the two runs: {cosine.min():.5f}")
        assert cosine.min() >= 0.998, cosine.min()
