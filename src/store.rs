//! SQLite storage (schema in `sql/schema.sql`). A document and all its chunks are written in one
//! transaction, so readers never see half a document; WAL mode lets `ask` read while a batch writes.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::error::{Error, Result};
use crate::vector;

pub const SCHEMA: &str = include_str!("../sql/schema.sql");
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
    pub file_bytes: u64,
    pub encoders: Vec<String>,
}

pub struct Store {
    conn: Connection,
    path: String,
}

impl Store {
    /// Opens (creating if needed) a database for writing: schema applied, WAL, busy timeout.
    pub fn open(path: &Path) -> Result<Store> {
        let label = path.display().to_string();
        let conn = Connection::open(path).map_err(|e| Error::db(&label, e))?;
        let store = Store { conn, path: label };
        store.configure(true)?;
        Ok(store)
    }

    /// Opens an existing database read-only (works on read-only files and directories).
    pub fn open_read_only(path: &Path) -> Result<Store> {
        let label = path.display().to_string();
        if !path.is_file() {
            return Err(Error::db(
                &label,
                "no such database file (create it with `e2llm compress --db FILE INPUT...`)",
            ));
        }
        let conn =
            Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)
                .map_err(|e| Error::db(&label, e))?;
        let store = Store { conn, path: label };
        store.configure(false)?;
        Ok(store)
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::db(&self.path, e)
    }

    fn configure(&self, writable: bool) -> Result<()> {
        self.conn.busy_timeout(BUSY_TIMEOUT).map_err(|e| self.err(e))?;
        if writable {
            // A chunk row (~2 KB: float32 x 384 + text) must fit in a page of a WITHOUT ROWID table:
            // with SQLite's default 4 KB pages every row spilled to an overflow page, doubling the file.
            // Takes effect only when the database is created; a no-op afterwards.
            self.conn.execute_batch("PRAGMA page_size = 16384").map_err(|e| self.corrupt(e))?;
            // journal_mode returns a row; a non-database file fails here with "file is not a database".
            let mode: String =
                self.conn.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0)).map_err(|e| self.corrupt(e))?;
            if !mode.eq_ignore_ascii_case("wal") {
                return Err(self.err(format!("could not enable WAL journal mode (got {mode})")));
            }
            self.conn.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;").map_err(|e| self.err(e))?;
            self.conn.execute_batch(SCHEMA).map_err(|e| self.corrupt(e))?;
            self.conn
                .execute(
                    "INSERT INTO e2llm_meta (key, value) VALUES ('schema_version', ?1) ON CONFLICT (key) DO NOTHING",
                    [SCHEMA_VERSION],
                )
                .map_err(|e| self.err(e))?;
        }
        self.check_schema()
    }

    fn corrupt(&self, e: rusqlite::Error) -> Error {
        corrupt(&self.path, e)
    }

    /// Read access (documents, chunks, stats) through this store's connection.
    pub fn reader(&self) -> Reader<'_> {
        Reader::new(&self.conn, &self.path)
    }

    fn check_schema(&self) -> Result<()> {
        self.reader().check_schema()
    }

    /// Registers `encoder` and returns its model id. Refuses a database whose documents were
    /// encoded by another encoder: their vectors cannot be compared.
    pub fn ensure_model(&self, encoder: &EncoderInfo) -> Result<i64> {
        if let Some(other) = self.reader().encoders()?.into_iter().find(|f| f != &encoder.fingerprint) {
            return Err(Error::EncoderMismatch {
                path: self.path.clone(),
                stored: other,
                loaded: encoder.fingerprint.clone(),
            });
        }
        self.conn
            .execute(
                "INSERT INTO models (encoder_sha256, encoder_source, dim, chunk_tokens) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (encoder_sha256, chunk_tokens) DO NOTHING",
                params![encoder.fingerprint, encoder.source, encoder.dim as i64, encoder.chunk_tokens as i64],
            )
            .map_err(|e| self.err(e))?;
        self.conn
            .query_row(
                "SELECT id FROM models WHERE encoder_sha256 = ?1 AND chunk_tokens = ?2",
                params![encoder.fingerprint, encoder.chunk_tokens as i64],
                |row| row.get(0),
            )
            .map_err(|e| self.err(e))
    }

    /// The stored content hash and model id of `doc_id`, if present.
    pub fn content_hash(&self, doc_id: &str) -> Result<Option<(String, i64)>> {
        self.conn
            .query_row("SELECT content_sha256, model_id FROM documents WHERE doc_id = ?1", [doc_id], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()
            .map_err(|e| self.err(e))
    }

    /// Writes documents, replacing earlier versions, in one transaction: all or nothing.
    pub fn write_documents(&mut self, model_id: i64, documents: &[NewDocument]) -> Result<()> {
        let path = self.path.clone();
        let err = |e: rusqlite::Error| Error::db(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut delete_chunks = tx.prepare_cached("DELETE FROM chunks WHERE doc_id = ?1").map_err(err)?;
            let mut upsert_document = tx
                .prepare_cached(
                    "INSERT INTO documents (doc_id, source, content_sha256, n_bytes, n_tokens, n_chunks, model_id)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                     ON CONFLICT (doc_id) DO UPDATE SET source = excluded.source,
                        content_sha256 = excluded.content_sha256, n_bytes = excluded.n_bytes,
                        n_tokens = excluded.n_tokens, n_chunks = excluded.n_chunks,
                        model_id = excluded.model_id,
                        created = strftime('%Y-%m-%dT%H:%M:%fZ', 'now')",
                )
                .map_err(err)?;
            let mut insert_chunk = tx
                .prepare_cached(
                    "INSERT INTO chunks (doc_id, seq, text, token_start, token_end, byte_start, byte_end, vector)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                )
                .map_err(err)?;
            for document in documents {
                delete_chunks.execute([&document.doc_id]).map_err(err)?;
                upsert_document
                    .execute(params![
                        document.doc_id,
                        document.source,
                        document.content_sha256,
                        document.n_bytes as i64,
                        document.n_tokens as i64,
                        document.chunks.len() as i64,
                        model_id
                    ])
                    .map_err(err)?;
                for chunk in &document.chunks {
                    insert_chunk
                        .execute(params![
                            document.doc_id,
                            chunk.seq as i64,
                            chunk.text,
                            chunk.token_start as i64,
                            chunk.token_end as i64,
                            chunk.byte_start as i64,
                            chunk.byte_end as i64,
                            vector::to_blob(&chunk.vector)
                        ])
                        .map_err(err)?;
                }
            }
        }
        tx.commit().map_err(err)
    }
}

/// Read access to an e2llm database through any connection: the CLI's own, or the host
/// connection the SQLite extension is called from.
pub struct Reader<'c> {
    conn: &'c Connection,
    path: String,
}

impl<'c> Reader<'c> {
    pub fn new(conn: &'c Connection, label: &str) -> Reader<'c> {
        Reader { conn, path: label.to_string() }
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> Error {
        Error::db(&self.path, e)
    }

    fn corrupt(&self, e: rusqlite::Error) -> Error {
        corrupt(&self.path, e)
    }

    /// Fails unless the e2llm tables exist.
    pub fn check_schema(&self) -> Result<()> {
        let tables: i64 = self
            .conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('models', 'documents', 'chunks')",
                [],
                |row| row.get(0),
            )
            .map_err(|e| self.corrupt(e))?;
        if tables != 3 {
            return Err(self.err("not an e2llm database (tables models, documents, chunks missing)"));
        }
        Ok(())
    }

    /// The encoder fingerprint(s) this database's vectors come from.
    pub fn encoders(&self) -> Result<Vec<String>> {
        let mut statement = self
            .conn
            .prepare("SELECT DISTINCT m.encoder_sha256 FROM models m JOIN documents d ON d.model_id = m.id")
            .map_err(|e| self.err(e))?;
        let rows = statement.query_map([], |row| row.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<String>>>().map_err(|e| self.err(e))
    }

    pub fn document(&self, doc_id: &str) -> Result<DocumentRow> {
        self.conn
            .query_row(
                "SELECT d.doc_id, d.source, d.content_sha256, d.n_bytes, d.n_tokens, d.n_chunks,
                        m.encoder_sha256, m.dim, m.chunk_tokens
                 FROM documents d JOIN models m ON m.id = d.model_id WHERE d.doc_id = ?1",
                [doc_id],
                |row| {
                    Ok(DocumentRow {
                        doc_id: row.get(0)?,
                        source: row.get(1)?,
                        content_sha256: row.get(2)?,
                        n_bytes: row.get::<_, i64>(3)? as usize,
                        n_tokens: row.get::<_, i64>(4)? as usize,
                        n_chunks: row.get::<_, i64>(5)? as usize,
                        encoder_fingerprint: row.get(6)?,
                        dim: row.get::<_, i64>(7)? as usize,
                        chunk_tokens: row.get::<_, i64>(8)? as usize,
                    })
                },
            )
            .optional()
            .map_err(|e| self.corrupt(e))?
            .ok_or_else(|| Error::UnknownDoc { doc_id: doc_id.to_string(), db: self.path.clone() })
    }

    /// The chunks of `document`, in order, read in one statement (one consistent snapshot).
    pub fn chunks(&self, document: &DocumentRow) -> Result<StoredChunks> {
        let mut statement = self
            .conn
            .prepare_cached("SELECT text, vector FROM chunks WHERE doc_id = ?1 ORDER BY seq")
            .map_err(|e| self.err(e))?;
        let mut rows = statement.query([&document.doc_id]).map_err(|e| self.err(e))?;
        let mut stored = StoredChunks { texts: Vec::new(), vectors: Vec::new(), dim: document.dim };
        while let Some(row) = rows.next().map_err(|e| self.err(e))? {
            stored.texts.push(row.get(0).map_err(|e| self.err(e))?);
            let blob: Vec<u8> = row.get(1).map_err(|e| self.err(e))?;
            let vector = vector::from_blob(&blob, document.dim).map_err(|e| {
                self.err(format!("document `{}` chunk {}: {e}", document.doc_id, stored.texts.len() - 1))
            })?;
            stored.vectors.extend_from_slice(&vector);
        }
        Ok(stored)
    }

    /// The one encoder configuration the database's documents use (export needs exactly one).
    pub fn encoder_info(&self) -> Result<EncoderInfo> {
        let mut statement = self
            .conn
            .prepare(
                "SELECT encoder_sha256, encoder_source, dim, chunk_tokens FROM models
                 WHERE id IN (SELECT DISTINCT model_id FROM documents) ORDER BY id",
            )
            .map_err(|e| self.corrupt(e))?;
        let rows = statement
            .query_map([], |row| {
                Ok(EncoderInfo {
                    fingerprint: row.get(0)?,
                    source: row.get(1)?,
                    dim: row.get::<_, i64>(2)? as usize,
                    chunk_tokens: row.get::<_, i64>(3)? as usize,
                })
            })
            .map_err(|e| self.err(e))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .map_err(|e| self.err(e))?;
        match rows.len() {
            0 => Err(self.err("no documents")),
            1 => Ok(rows.into_iter().next().expect("one row")),
            _ => Err(self.err(format!(
                "documents were compressed with {} encoder configurations (chunk sizes {:?}); re-compress with one",
                rows.len(),
                rows.iter().map(|r| r.chunk_tokens).collect::<Vec<_>>()
            ))),
        }
    }

    /// A document with every stored field, as it would be written (export, tests).
    pub fn full_document(&self, doc_id: &str) -> Result<NewDocument> {
        let row = self.document(doc_id)?;
        let mut statement = self
            .conn
            .prepare_cached(
                "SELECT seq, text, token_start, token_end, byte_start, byte_end, vector FROM chunks
                 WHERE doc_id = ?1 ORDER BY seq",
            )
            .map_err(|e| self.err(e))?;
        let chunks = statement
            .query_map([doc_id], |r| {
                Ok((
                    r.get::<_, i64>(0)? as usize,
                    r.get::<_, String>(1)?,
                    [r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?, r.get::<_, i64>(5)?],
                    r.get::<_, Vec<u8>>(6)?,
                ))
            })
            .map_err(|e| self.err(e))?
            .map(|r| {
                let (seq, text, span, blob) = r.map_err(|e| self.err(e))?;
                Ok(NewChunk {
                    seq,
                    text,
                    token_start: span[0] as usize,
                    token_end: span[1] as usize,
                    byte_start: span[2] as usize,
                    byte_end: span[3] as usize,
                    vector: vector::from_blob(&blob, row.dim)
                        .map_err(|e| self.err(format!("document `{doc_id}` chunk {seq}: {e}")))?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(NewDocument {
            doc_id: row.doc_id,
            source: row.source.unwrap_or_default(),
            content_sha256: row.content_sha256,
            n_bytes: row.n_bytes,
            n_tokens: row.n_tokens,
            chunks,
        })
    }

    pub fn doc_ids(&self) -> Result<Vec<String>> {
        let mut statement =
            self.conn.prepare("SELECT doc_id FROM documents ORDER BY doc_id").map_err(|e| self.err(e))?;
        let rows = statement.query_map([], |row| row.get(0)).map_err(|e| self.err(e))?;
        rows.collect::<rusqlite::Result<Vec<String>>>().map_err(|e| self.err(e))
    }

    pub fn stats(&self) -> Result<Stats> {
        let (documents, chunks, text_bytes, vector_bytes): (i64, i64, i64, i64) = self
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM documents), count(*), coalesce(sum(length(CAST(text AS BLOB))), 0),
                        coalesce(sum(length(vector)), 0) FROM chunks",
                [],
                |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)),
            )
            .map_err(|e| self.corrupt(e))?;
        let page_count: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        let page_size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(Stats {
            documents: documents as u64,
            chunks: chunks as u64,
            text_bytes: text_bytes as u64,
            vector_bytes: vector_bytes as u64,
            file_bytes: (page_count * page_size) as u64,
            encoders: self.encoders()?,
        })
    }
}

fn corrupt(path: &str, e: rusqlite::Error) -> Error {
    let text = e.to_string();
    if text.contains("not a database") || text.contains("malformed") {
        Error::db(path, format!("{text}: the file is not an SQLite database or is corrupt"))
    } else {
        Error::db(path, text)
    }
}
