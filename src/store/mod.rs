//! SQLite storage (schema in `sql/schema.sql`). A document and all its chunks are written in one
//! transaction, so readers never see half a document; WAL mode lets `ask` read while a batch writes.
//!
//! This module owns the shared constants, row types and error helpers; the writer ([`Store`]) is in
//! `writer.rs`, the reader ([`Reader`]) in `reader.rs`, and the open policy (permissions, WAL index,
//! immutable open) in `open.rs`.

mod open;
mod reader;
mod writer;

use std::time::Duration;

use crate::error::Error;

pub use reader::Reader;
pub use writer::Store;

pub const SCHEMA: &str = include_str!("../../sql/schema.sql");
pub const SCHEMA_VERSION: &str = "1";
/// How long a connection waits for a writer's lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(60);

/// The encoder configuration a database's vectors come from.
#[derive(Debug, Clone, PartialEq)]
pub struct EncoderInfo {
    pub fingerprint: String,
    pub source: String,
    pub dim: usize,
    pub chunk_tokens: usize,
}

/// A document ready to be written: its metadata and its chunks with vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDocument {
    pub doc_id: String,
    pub source: String,
    pub content_sha256: String,
    pub n_bytes: usize,
    pub n_tokens: usize,
    pub chunks: Vec<NewChunk>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewChunk {
    pub seq: usize,
    pub text: String,
    pub token_start: usize,
    pub token_end: usize,
    pub byte_start: usize,
    pub byte_end: usize,
    pub vector: Vec<f32>,
    /// RCC memory (`compress --rcc`), stored in `chunk_memory` in the same transaction.
    pub memory: Option<StoredMemory>,
}

/// A chunk's RCC memory as stored: the encoder's fingerprint, slot count and float16 BLOB (`src/rcc.rs`).
#[derive(Debug, Clone, PartialEq)]
pub struct StoredMemory {
    pub rcc_sha256: String,
    pub slots: usize,
    pub blob: Vec<u8>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DocumentRow {
    pub doc_id: String,
    pub source: Option<String>,
    pub content_sha256: String,
    pub n_bytes: usize,
    pub n_tokens: usize,
    pub n_chunks: usize,
    pub encoder_fingerprint: String,
    pub dim: usize,
    pub chunk_tokens: usize,
}

/// A document's chunks as stored: texts in order and their vectors (row-major, `dim` columns).
#[derive(Debug, Clone)]
pub struct StoredChunks {
    pub texts: Vec<String>,
    pub vectors: Vec<f32>,
    pub dim: usize,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Stats {
    pub documents: u64,
    pub chunks: u64,
    pub text_bytes: u64,
    pub vector_bytes: u64,
    /// RCC memory (`chunk_memory`), 0 without.
    pub memory_bytes: u64,
    pub file_bytes: u64,
    pub encoders: Vec<String>,
}

fn corrupt(path: &str, e: rusqlite::Error) -> Error {
    let text = e.to_string();
    if text.contains("not a database") || text.contains("malformed") {
        Error::db(path, format!("{text}: the file is not an SQLite database or is corrupt"))
    } else {
        sqlite_error(path, e)
    }
}

/// SQLite's error with its context; SQLITE_READONLY (whatever its extended code: a read-only
/// file, directory or mount, `PRAGMA query_only`) becomes the read-only error that says what to do.
fn sqlite_error(path: &str, e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(failure, _) if failure.code == rusqlite::ErrorCode::ReadOnly => {
            Error::read_only(path, e)
        }
        _ => Error::db(path, e),
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::*;

    #[test]
    fn the_schema_creates_every_table_and_can_be_applied_again() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        let mut statement = conn.prepare("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").unwrap();
        let tables: Vec<String> = statement.query_map([], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
        assert_eq!(tables, ["chunk_memory", "chunks", "documents", "e2llm_meta", "models"]);
    }

    #[test]
    fn corrupt_says_what_a_file_that_is_not_a_database_is() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("garbage.db");
        std::fs::write(&path, vec![0x5a; 4096]).unwrap();
        let e = Connection::open(&path)
            .unwrap()
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get::<_, i64>(0));
        let err = corrupt("LABEL", e.unwrap_err());
        match err {
            Error::Database { path, source } => {
                let reason = source.to_string();
                assert_eq!(path, "LABEL");
                assert!(reason.ends_with(": the file is not an SQLite database or is corrupt"), "{reason}");
                assert!(reason.contains("not a database"), "keeps SQLite's words: {reason}");
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn corrupt_leaves_other_errors_to_sqlite_error() {
        let conn = Connection::open_in_memory().unwrap();
        let syntax = conn.execute_batch("SELEKT 1").unwrap_err();
        let err = corrupt("LABEL", syntax);
        assert!(matches!(err, Error::Database { .. }), "{err}");
        assert!(!err.to_string().contains("corrupt"), "{err}");
        conn.execute_batch("CREATE TABLE t (x); PRAGMA query_only = 1").unwrap();
        let read_only = conn.execute_batch("INSERT INTO t VALUES (1)").unwrap_err();
        assert!(matches!(corrupt("LABEL", read_only), Error::ReadOnly { .. }));
    }

    /// SQLITE_READONLY in any of its extended codes is the read-only error; anything else is a
    /// database error naming the file.
    #[test]
    fn sqlite_error_makes_read_only_failures_read_only_errors() {
        use rusqlite::ffi;
        for code in [ffi::SQLITE_READONLY, ffi::SQLITE_READONLY_DBMOVED, ffi::SQLITE_READONLY_DIRECTORY] {
            let e = rusqlite::Error::SqliteFailure(ffi::Error::new(code), None);
            match sqlite_error("LABEL", e) {
                Error::ReadOnly { path, .. } => assert_eq!(path, "LABEL"),
                other => panic!("code {code}: {other}"),
            }
        }
        for e in [
            rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_BUSY), None),
            rusqlite::Error::QueryReturnedNoRows,
        ] {
            match sqlite_error("LABEL", e) {
                Error::Database { path, .. } => assert_eq!(path, "LABEL"),
                other => panic!("{other}"),
            }
        }
    }
}
