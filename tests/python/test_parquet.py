"""The Parquet export opens as it is in pyarrow, pandas and DuckDB, with the contract's schema."""

import json
import sqlite3
import subprocess
import sys

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from conftest import ROOT


def test_export_opens_in_pyarrow_pandas_and_duckdb(e2llm, corpus_db, tmp_path):
    out = tmp_path / "chunks.parquet"
    e2llm("export", "--db", corpus_db, "--out", out)
    with sqlite3.connect(corpus_db) as db:
        rows, docs = db.execute("SELECT count(*), count(DISTINCT doc_id) FROM chunks").fetchone()
        fingerprint = db.execute("SELECT encoder_sha256 FROM models").fetchone()[0]

    table = pq.read_table(out)
    assert table.num_rows == rows
    schema = table.schema
    assert schema.field("doc_id").type == pa.string()
    assert schema.field("seq").type == pa.int32()
    assert schema.field("text").type == pa.string()
    assert schema.field("vector").type == pa.list_(pa.field("item", pa.float32(), nullable=False), 384)
    meta = {k.decode(): v.decode() for k, v in schema.metadata.items()}
    assert meta["e2llm.encoder_fingerprint"] == fingerprint
    assert meta["e2llm.dim"] == "384" and meta["e2llm.chunk_tokens"] == "128"
    assert pq.ParquetFile(out).metadata.row_group(0).column(0).compression == "ZSTD"

    frame = table.to_pandas()
    assert frame.groupby("doc_id").size().sum() == rows and frame["doc_id"].nunique() == docs
    assert len(frame["vector"].iloc[0]) == 384

    con = duckdb.connect()
    assert con.execute("SELECT count(*) FROM read_parquet(?)", [str(out)]).fetchone()[0] == rows
    assert con.execute("SELECT DISTINCT array_length(vector) FROM read_parquet(?)", [str(out)]).fetchall() == [(384,)]
    # A cosine query in DuckDB finds the chunk that answers the question.
    query = json.loads(e2llm("embed", "the Seventy-seventh Congress").stdout.splitlines()[0])
    doc_id, text = con.execute(
        "SELECT doc_id, text FROM read_parquet(?) ORDER BY array_cosine_similarity(vector::FLOAT[384], ?::FLOAT[384]) DESC LIMIT 1",
        [str(out), query],
    ).fetchone()
    assert doc_id == "1941-Roosevelt-1.txt" and "Seventy-seventh" in text


def test_analytics_example_runs(e2llm, corpus_db, tmp_path):
    out = tmp_path / "chunks.parquet"
    e2llm("export", "--db", corpus_db, "--out", out)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "analytics.py"), str(out), "Which Congress is addressed?", str(ROOT / "target/release/e2llm")],
        capture_output=True, text=True, check=True,
    )
    assert "chunks per document" in result.stdout and "1941-Roosevelt-1.txt" in result.stdout


def test_import_round_trip_is_identical(e2llm, corpus_db, tmp_path):
    out = tmp_path / "chunks.parquet"
    e2llm("export", "--db", corpus_db, "--out", out)
    copy = tmp_path / "copy.db"
    e2llm("import", "--db", copy, out)
    query = "SELECT doc_id, seq, text, token_start, token_end, byte_start, byte_end, vector FROM chunks ORDER BY doc_id, seq"
    docs = "SELECT doc_id, source, content_sha256, n_bytes, n_tokens, n_chunks FROM documents ORDER BY doc_id"
    with sqlite3.connect(corpus_db) as a, sqlite3.connect(copy) as b:
        assert a.execute(query).fetchall() == b.execute(query).fetchall()
        assert a.execute(docs).fetchall() == b.execute(docs).fetchall()
