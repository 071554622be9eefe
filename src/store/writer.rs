//! The writer: `Store` opens (or creates) a database and writes documents, one transaction each batch.

use std::path::Path;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use super::open::{check_writable, needs_wal_index, open_immutable};
use super::{corrupt, sqlite_error, EncoderInfo, NewDocument, Reader, BUSY_TIMEOUT, SCHEMA, SCHEMA_VERSION};
use crate::error::{BoxError, Error, Result};
use crate::vector;

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
            return Err(Error::read_only(label, reason));
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

    fn err(&self, e: impl Into<BoxError>) -> Error {
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
            // The tables and the version in one transaction: a run killed here leaves all of them or
            // none (a reader never meets half a schema).
            let tx = self.conn.unchecked_transaction().map_err(|e| self.sqlite(e))?;
            tx.execute_batch(SCHEMA).map_err(|e| self.corrupt(e))?;
            tx.execute(
                "INSERT INTO e2llm_meta (key, value) VALUES ('schema_version', ?1) ON CONFLICT (key) DO NOTHING",
                [SCHEMA_VERSION],
            )
            .map_err(|e| self.sqlite(e))?;
            tx.commit().map_err(|e| self.sqlite(e))?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{NewChunk, StoredMemory};

    fn encoder(chunk_tokens: usize) -> EncoderInfo {
        EncoderInfo { fingerprint: "enc".into(), source: "src".into(), dim: 2, chunk_tokens }
    }

    /// Document `doc_id` of `texts`, one chunk each; with `rcc`, every chunk has memory of that encoder.
    fn document(doc_id: &str, texts: &[&str], rcc: Option<&str>) -> NewDocument {
        let mut offset = 0;
        let chunks = texts
            .iter()
            .enumerate()
            .map(|(seq, text)| {
                let chunk = NewChunk {
                    seq,
                    text: text.to_string(),
                    token_start: seq * 3,
                    token_end: seq * 3 + 3,
                    byte_start: offset,
                    byte_end: offset + text.len(),
                    vector: vec![seq as f32, -0.25],
                    memory: rcc.map(|rcc| StoredMemory {
                        rcc_sha256: rcc.into(),
                        slots: seq + 1,
                        blob: vec![seq as u8; 2 * (seq + 1)],
                    }),
                };
                offset += text.len();
                chunk
            })
            .collect();
        NewDocument {
            doc_id: doc_id.into(),
            source: format!("{doc_id}.txt"),
            content_sha256: format!("sha of {texts:?}"),
            n_bytes: offset,
            n_tokens: texts.len() * 3,
            chunks,
        }
    }

    #[test]
    fn open_creates_a_wal_database_of_16k_pages_with_its_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let store = Store::open(&path).unwrap();
        assert_eq!(store.path(), path.display().to_string());
        let pragma = |name: &str| -> String {
            store
                .connection()
                .query_row(&format!("PRAGMA {name}"), [], |r| r.get::<_, rusqlite::types::Value>(0))
                .map(|v| match v {
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    other => format!("{other:?}"),
                })
                .unwrap()
        };
        assert_eq!(pragma("journal_mode"), "wal");
        assert_eq!(pragma("page_size"), "16384");
        assert_eq!(pragma("foreign_keys"), "1");
        assert_eq!(pragma("synchronous"), "1", "NORMAL");
        assert_eq!(pragma("busy_timeout"), BUSY_TIMEOUT.as_millis().to_string());
        let version: String = store
            .connection()
            .query_row("SELECT value FROM e2llm_meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        drop(store);
        // Reopening changes nothing and the read-only open needs the file.
        Store::open(&path).unwrap();
        let read_only = Store::open_read_only(&path).unwrap();
        assert_eq!(
            read_only.connection().query_row("PRAGMA busy_timeout", [], |r| r.get::<_, i64>(0)).unwrap(),
            60_000
        );
    }

    #[test]
    fn open_read_only_creates_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.db");
        let err = Store::open_read_only(&path).err().expect("a missing file is refused");
        assert!(matches!(err, Error::Database { .. }), "{err}");
        assert!(err.to_string().contains("e2llm compress --db FILE"), "{err}");
        assert!(!path.exists());
    }

    #[test]
    fn ensure_model_returns_one_id_per_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("t.db")).unwrap();
        let first = store.ensure_model(&encoder(128)).unwrap();
        assert_eq!(store.ensure_model(&encoder(128)).unwrap(), first);
        let other = store.ensure_model(&encoder(256)).unwrap();
        assert_ne!(other, first);
        assert_eq!(store.ensure_model(&encoder(256)).unwrap(), other);
    }

    /// Every field written, memory included, reads back as written, through a read-only open.
    #[test]
    fn documents_and_their_memory_read_back_as_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        let mut store = Store::open(&path).unwrap();
        let model = store.ensure_model(&encoder(128)).unwrap();
        let written = [document("a", &["one ", "two ", "three"], Some("rcc")), document("b", &["x"], None)];
        store.write_documents(model, &written).unwrap();
        assert_eq!(store.content_hash("a").unwrap(), Some((written[0].content_sha256.clone(), model)));
        assert_eq!(store.content_hash("c").unwrap(), None);
        drop(store);

        let store = Store::open_read_only(&path).unwrap();
        let reader = store.reader();
        assert_eq!(reader.path(), store.path());
        for document in &written {
            assert_eq!(reader.full_document(&document.doc_id).unwrap(), *document);
        }
        assert!(reader.has_memory("a", "rcc").unwrap());
        assert!(!reader.has_memory("b", "rcc").unwrap());
        assert_eq!(reader.stats().unwrap().memory_bytes, 2 + 4 + 6);
    }

    /// A new version of a document replaces its chunks and its memory: none of the old survives.
    #[test]
    fn rewriting_a_document_drops_its_old_chunks_and_memory() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let model = store.ensure_model(&encoder(128)).unwrap();
        store.write_documents(model, &[document("a", &["one ", "two"], Some("rcc"))]).unwrap();
        assert!(store.reader().has_memory("a", "rcc").unwrap());
        let shorter = document("a", &["only"], None);
        store.write_documents(model, std::slice::from_ref(&shorter)).unwrap();
        assert_eq!(store.reader().full_document("a").unwrap(), shorter);
        let stats = store.reader().stats().unwrap();
        assert_eq!((stats.documents, stats.chunks, stats.memory_bytes), (1, 1, 0));
    }

    /// A batch that fails part-way (here the second document names a model that does not exist)
    /// leaves the database as it was.
    #[test]
    fn a_batch_is_all_or_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("t.db")).unwrap();
        let model = store.ensure_model(&encoder(128)).unwrap();
        let before = document("a", &["kept"], Some("rcc"));
        store.write_documents(model, std::slice::from_ref(&before)).unwrap();
        let err = store
            .write_documents(model + 1, &[document("a", &["new"], None), document("b", &["x"], None)])
            .unwrap_err();
        assert!(err.to_string().contains("FOREIGN KEY"), "{err}");
        assert_eq!(store.reader().doc_ids().unwrap(), ["a"]);
        assert_eq!(store.reader().full_document("a").unwrap(), before);
    }
}
