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

pub struct Store {
    conn: Connection,
    path: String,
}

impl Store {
    /// Opens (creating if needed) a database for writing: schema applied, WAL, busy timeout.
    /// A database this process may not write is refused up front, before SQLite touches it.
    pub fn open(path: &Path) -> Result<Store> {
        let label = path.display().to_string();
        if let Err(reason) = check_writable(path) {
            return Err(Error::ReadOnly { path: label, reason });
        }
        let conn = Connection::open(path).map_err(|e| sqlite_error(&label, e))?;
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
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let mut conn = Connection::open_with_flags(path, flags).map_err(|e| Error::db(&label, e))?;
        // The first read is where a WAL database whose -shm cannot be created fails.
        if let Err(e) = conn.query_row("SELECT count(*) FROM sqlite_master", [], |row| row.get::<_, i64>(0)) {
            if needs_wal_index(&e) {
                conn = open_immutable(path, &label, e)?;
            }
            // Any other error (not a database, corrupt) is reported by `configure` below.
        }
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

    fn sqlite(&self, e: rusqlite::Error) -> Error {
        sqlite_error(&self.path, e)
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
            self.conn
                .execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=ON;")
                .map_err(|e| self.sqlite(e))?;
            self.conn.execute_batch(SCHEMA).map_err(|e| self.corrupt(e))?;
            self.conn
                .execute(
                    "INSERT INTO e2llm_meta (key, value) VALUES ('schema_version', ?1) ON CONFLICT (key) DO NOTHING",
                    [SCHEMA_VERSION],
                )
                .map_err(|e| self.sqlite(e))?;
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
            .map_err(|e| self.sqlite(e))?;
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
        let err = |e: rusqlite::Error| sqlite_error(&path, e);
        let tx = self.conn.transaction().map_err(err)?;
        {
            let mut delete_chunks = tx.prepare_cached("DELETE FROM chunks WHERE doc_id = ?1").map_err(err)?;
            let mut delete_memory = tx.prepare_cached("DELETE FROM chunk_memory WHERE doc_id = ?1").map_err(err)?;
            let mut insert_memory = tx
                .prepare_cached(
                    "INSERT INTO chunk_memory (doc_id, seq, rcc_sha256, slots, memory) VALUES (?1, ?2, ?3, ?4, ?5)",
                )
                .map_err(err)?;
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
                delete_memory.execute([&document.doc_id]).map_err(err)?;
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
                    if let Some(memory) = &chunk.memory {
                        insert_memory
                            .execute(params![
                                document.doc_id,
                                chunk.seq as i64,
                                memory.rcc_sha256,
                                memory.slots as i64,
                                memory.blob
                            ])
                            .map_err(err)?;
                    }
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
        // Databases of the first releases may lack the row (read-only opens never wrote it): they are
        // version 1. Any other version was written by another e2llm, whose layout this one cannot vouch for.
        let version: Option<String> = self
            .conn
            .query_row("SELECT value FROM e2llm_meta WHERE key = 'schema_version'", [], |row| row.get(0))
            .optional()
            .or_else(|e| match e {
                rusqlite::Error::SqliteFailure(_, Some(ref m)) if m.contains("no such table") => Ok(None),
                e => Err(e),
            })
            .map_err(|e| self.corrupt(e))?;
        match version.as_deref() {
            None | Some(SCHEMA_VERSION) => Ok(()),
            Some(other) => Err(self.err(format!(
                "schema version {other}, but this e2llm {} reads version {SCHEMA_VERSION}: open it with the e2llm \
                 that wrote it, or re-compress the documents into a new database",
                env!("CARGO_PKG_VERSION")
            ))),
        }
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

    /// The RCC memory of `document`'s chunks `seqs` (stored BLOBs, checked against `rcc_sha256`).
    /// A database written before RCC existed has no `chunk_memory` table: that is "no memory" too.
    pub fn memory(&self, document: &DocumentRow, seqs: &[usize], rcc_sha256: &str) -> Result<Vec<(usize, Vec<u8>)>> {
        let missing =
            |detail: String| Error::MemoryMissing { doc_id: document.doc_id.clone(), db: self.path.clone(), detail };
        let has_table: bool = self
            .conn
            .query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'chunk_memory'", [], |r| {
                r.get::<_, i64>(0)
            })
            .map_err(|e| self.err(e))?
            > 0;
        if !has_table {
            return Err(missing(" (the database predates RCC)".into()));
        }
        let mut statement = self
            .conn
            .prepare_cached("SELECT rcc_sha256, slots, memory FROM chunk_memory WHERE doc_id = ?1 AND seq = ?2")
            .map_err(|e| self.err(e))?;
        let mut out = Vec::with_capacity(seqs.len());
        for &seq in seqs {
            let row: Option<(String, i64, Vec<u8>)> = statement
                .query_row(params![document.doc_id, seq as i64], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                .optional()
                .map_err(|e| self.corrupt(e))?;
            match row {
                None => return Err(missing(format!(" for chunk {seq}"))),
                Some((stored, _, _)) if stored != rcc_sha256 => {
                    return Err(missing(format!(
                    " from the loaded RCC encoder (chunk {seq} has memory of RCC encoder {stored}, the loaded one is \
                         {rcc_sha256})"
                )))
                }
                Some((_, slots, blob)) => out.push((slots.max(0) as usize, blob)),
            }
        }
        Ok(out)
    }

    /// Whether every chunk of `doc_id` has memory of RCC encoder `rcc_sha256` (compress skips it then).
    pub fn has_memory(&self, doc_id: &str, rcc_sha256: &str) -> Result<bool> {
        self.conn
            .query_row(
                "SELECT (SELECT count(*) FROM chunks WHERE doc_id = ?1)
                      = (SELECT count(*) FROM chunk_memory WHERE doc_id = ?1 AND rcc_sha256 = ?2)",
                params![doc_id, rcc_sha256],
                |r| r.get::<_, bool>(0),
            )
            .map_err(|e| self.err(e))
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
                "SELECT c.seq, c.text, c.token_start, c.token_end, c.byte_start, c.byte_end, c.vector,
                        m.rcc_sha256, m.slots, m.memory
                 FROM chunks c LEFT JOIN chunk_memory m ON m.doc_id = c.doc_id AND m.seq = c.seq
                 WHERE c.doc_id = ?1 ORDER BY c.seq",
            )
            .map_err(|e| self.err(e))?;
        let chunks = statement
            .query_map([doc_id], |r| {
                Ok((
                    r.get::<_, i64>(0)? as usize,
                    r.get::<_, String>(1)?,
                    [r.get::<_, i64>(2)?, r.get::<_, i64>(3)?, r.get::<_, i64>(4)?, r.get::<_, i64>(5)?],
                    r.get::<_, Vec<u8>>(6)?,
                    match r.get::<_, Option<String>>(7)? {
                        Some(rcc_sha256) => {
                            Some(StoredMemory { rcc_sha256, slots: r.get::<_, i64>(8)? as usize, blob: r.get(9)? })
                        }
                        None => None,
                    },
                ))
            })
            .map_err(|e| self.err(e))?
            .map(|r| {
                let (seq, text, span, blob, memory) = r.map_err(|e| self.err(e))?;
                Ok(NewChunk {
                    seq,
                    text,
                    token_start: span[0] as usize,
                    token_end: span[1] as usize,
                    byte_start: span[2] as usize,
                    byte_end: span[3] as usize,
                    vector: vector::from_blob(&blob, row.dim)
                        .map_err(|e| self.err(format!("document `{doc_id}` chunk {seq}: {e}")))?,
                    memory,
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
        // A database older than RCC may lack the table (read-only opens do not add it).
        let memory_bytes: i64 = self
            .conn
            .query_row("SELECT coalesce(sum(length(memory)), 0) FROM chunk_memory", [], |r| r.get(0))
            .unwrap_or(0);
        let page_count: i64 = self.conn.query_row("PRAGMA page_count", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        let page_size: i64 = self.conn.query_row("PRAGMA page_size", [], |r| r.get(0)).map_err(|e| self.err(e))?;
        Ok(Stats {
            documents: documents as u64,
            chunks: chunks as u64,
            text_bytes: text_bytes as u64,
            vector_bytes: vector_bytes as u64,
            memory_bytes: memory_bytes as u64,
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
        sqlite_error(path, e)
    }
}

/// SQLite's error with its context; SQLITE_READONLY (whatever its extended code: a read-only
/// file, directory or mount, `PRAGMA query_only`) becomes the read-only error that says what to do.
fn sqlite_error(path: &str, e: rusqlite::Error) -> Error {
    match &e {
        rusqlite::Error::SqliteFailure(failure, _) if failure.code == rusqlite::ErrorCode::ReadOnly => {
            Error::ReadOnly { path: path.to_string(), reason: e.to_string() }
        }
        _ => Error::db(path, e),
    }
}

/// Whether this process may write `path`, asked of the kernel with the effective ids, so that root,
/// ACLs and read-only mounts count as they will when SQLite opens the file.
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call; faccessat only reads it.
    unsafe { libc::faccessat(libc::AT_FDCWD, c_path.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its file name (`t.db` -> `t.db-wal`).
fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    name.into()
}

/// Why this process cannot write the database at `path`, if it cannot. A writer needs the file and
/// its directory: WAL mode creates `-wal` and `-shm` files beside the database.
fn check_writable(path: &Path) -> std::result::Result<(), String> {
    let dir = directory_of(path);
    if path.exists() && !writable(path) {
        return Err("this user may not write the file".into());
    }
    let logs_writable = [sibling(path, "-wal"), sibling(path, "-shm")].iter().all(|p| p.exists() && writable(p));
    if dir.is_dir() && !writable(dir) && !logs_writable {
        return Err(format!("this user may not create files in its directory {}", dir.display()));
    }
    Ok(())
}

/// A read that failed because SQLite could not create or open the WAL index (`-shm`): a WAL-mode
/// database in a directory this process cannot write.
fn needs_wal_index(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(failure, _)
        if matches!(failure.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen))
}

/// Opens a WAL-mode database that nobody writes with `immutable=1`, after a read-only open failed
/// (`first_error`) because SQLite could not create its `-shm` file.
///
/// `immutable=1` tells SQLite the file cannot change while it is open: it takes no locks and reads
/// no WAL. That is only true when no one writes the file, so it is used only when:
/// - there is no `-wal` and no `-shm` beside the file. A WAL-mode connection keeps both while it is
///   open, and SQLite deletes them when the last connection closes cleanly, so no writer has the
///   database open now and no committed transaction waits in a log that we would skip (a writer
///   that crashed leaves them: then we refuse, as skipping its log could show an older or torn state);
/// - this process may write neither the file nor its directory, so no writer of ours can exist.
///
/// What it cannot rule out: another user allowed to write them (the owner, root) starting a write
/// while we read. This connection would not see that write, and a checkpoint rewriting pages during
/// a query could make it fail with "malformed" or read a stale page; it never writes. A database
/// made read-only is one its owner does not mean to change, so the read is of a snapshot at rest.
fn open_immutable(path: &Path, label: &str, first_error: rusqlite::Error) -> Result<Connection> {
    let dir = directory_of(path);
    let shown_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let logs: Vec<_> = [sibling(path, "-wal"), sibling(path, "-shm")].into_iter().filter(|p| p.exists()).collect();
    if !logs.is_empty() {
        return Err(Error::db(
            label,
            format!(
                "cannot read it: it has a write-ahead log ({}) that this user cannot open in {}, a directory it may \
                 not write (SQLite: {first_error}); open the database once as a user who can write there (e.g. \
                 `e2llm info --db FILE`) to fold the log back into the file",
                logs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                shown_dir.display()
            ),
        ));
    }
    if writable(path) || writable(dir) {
        return Err(Error::db(
            label,
            format!(
                "cannot read it: SQLite must create its -shm file (WAL mode) in {}, which this user may not write \
                 (SQLite: {first_error}); make the directory writable for this user",
                shown_dir.display()
            ),
        ));
    }
    let uri = immutable_uri(path).map_err(|e| Error::io(format!("resolving {label}"), e))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(&uri, flags).map_err(|e| Error::db(label, e))
}

/// `file:/absolute/path?immutable=1`, the path percent-encoded (URI filenames give `?`, `#` and `%`
/// meaning).
fn immutable_uri(path: &Path) -> std::io::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::fs::canonicalize(path)?;
    let mut uri = String::from("file:");
    for &byte in absolute.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}
