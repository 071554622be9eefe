-- e2llm storage schema (contract: users query these tables directly; names may grow, not change).
-- Applied by the library on open; every statement is idempotent.

CREATE TABLE IF NOT EXISTS e2llm_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- One row per encoder configuration that produced vectors in this database.
CREATE TABLE IF NOT EXISTS models (
    id                  INTEGER PRIMARY KEY,
    encoder_sha256      TEXT    NOT NULL,  -- encoder fingerprint from models/<name>/manifest.json
    encoder_source      TEXT    NOT NULL,
    dim                 INTEGER NOT NULL,
    chunk_tokens        INTEGER NOT NULL,
    created             TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
    UNIQUE (encoder_sha256, chunk_tokens)
);

CREATE TABLE IF NOT EXISTS documents (
    doc_id          TEXT    PRIMARY KEY,
    source          TEXT,                  -- file path or input it came from
    content_sha256  TEXT    NOT NULL,      -- sha256 of the UTF-8 text: unchanged => skipped on re-runs
    n_bytes         INTEGER NOT NULL,
    n_tokens        INTEGER NOT NULL,      -- encoder tokens
    n_chunks        INTEGER NOT NULL,
    model_id        INTEGER NOT NULL REFERENCES models (id),
    created         TEXT    NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
);

CREATE TABLE IF NOT EXISTS chunks (
    doc_id       TEXT    NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,         -- 0-based position in the document
    text         TEXT    NOT NULL,         -- chunk texts concatenated in seq order = the document
    token_start  INTEGER NOT NULL,         -- encoder-token span [token_start, token_end)
    token_end    INTEGER NOT NULL,
    byte_start   INTEGER NOT NULL,         -- byte span of text in the document
    byte_end     INTEGER NOT NULL,
    vector       BLOB    NOT NULL,         -- little-endian float32 x dim (sqlite-vec format)
    PRIMARY KEY (doc_id, seq)
) WITHOUT ROWID;

-- RCC memory (`e2llm compress --rcc`): per chunk, the keys and values the RCC encoder keeps from every
-- decoder layer at every `ratio`-th token (src/rcc.rs). Written with the document, in the same transaction.
CREATE TABLE IF NOT EXISTS chunk_memory (
    doc_id      TEXT    NOT NULL REFERENCES documents (doc_id) ON DELETE CASCADE,
    seq         INTEGER NOT NULL,          -- the chunk (chunks.seq)
    rcc_sha256  TEXT    NOT NULL,          -- RCC encoder fingerprint (manifest.json rcc.fingerprint)
    slots       INTEGER NOT NULL,          -- memory positions (ceil(decoder tokens / ratio))
    memory      BLOB    NOT NULL,          -- little-endian float16 [layers, 2 (key, value), kv_heads, slots, head_dim], keys before rotary
    PRIMARY KEY (doc_id, seq)
) WITHOUT ROWID;
