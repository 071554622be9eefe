//! The reader: `Reader` reads documents, chunks, RCC memory and stats through any connection.

use rusqlite::{params, Connection, OptionalExtension};

use super::{
    corrupt, DocumentRow, EncoderInfo, NewChunk, NewDocument, Stats, StoredChunks, StoredMemory, SCHEMA_VERSION,
};
use crate::error::{BoxError, Error, Result};
use crate::vector;

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

    fn err(&self, e: impl Into<BoxError>) -> Error {
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

#[cfg(test)]
mod tests {
    use rusqlite::{params, Connection};

    use super::*;
    use crate::store::SCHEMA;

    /// An in-memory database written with plain SQL, not `Store`: the reader must read any
    /// connection that holds the schema (the SQLite extension reads the host's).
    /// Document `a`: model 1 (dim 2), chunks 0 and 1, memory of RCC encoder `rcc` for chunk 0 only.
    fn database() -> Connection {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(SCHEMA).unwrap();
        conn.execute_batch(
            "INSERT INTO e2llm_meta VALUES ('schema_version', '1');
             INSERT INTO models (id, encoder_sha256, encoder_source, dim, chunk_tokens) VALUES (1, 'enc', 'src', 2, 128);
             INSERT INTO documents (doc_id, source, content_sha256, n_bytes, n_tokens, n_chunks, model_id)
                VALUES ('a', 'a.txt', 'sha', 9, 20, 2, 1);",
        )
        .unwrap();
        for (seq, text, vector) in [(0, "one. ", [0.5f32, -1.0]), (1, "two.", [2.0, 1e-7])] {
            conn.execute(
                "INSERT INTO chunks VALUES ('a', ?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                params![
                    seq,
                    text,
                    seq * 10,
                    seq * 10 + 10,
                    seq * 5,
                    seq * 5 + text.len() as i64,
                    vector::to_blob(&vector)
                ],
            )
            .unwrap();
        }
        conn.execute("INSERT INTO chunk_memory VALUES ('a', 0, 'rcc', 3, ?1)", [vec![1u8, 2, 3, 4]]).unwrap();
        conn
    }

    #[test]
    fn reads_what_plain_sql_wrote() {
        let conn = database();
        let reader = Reader::new(&conn, "LABEL");
        assert_eq!(reader.path(), "LABEL");
        reader.check_schema().unwrap();
        let row = reader.document("a").unwrap();
        assert_eq!(
            (row.source.as_deref(), row.n_bytes, row.n_tokens, row.n_chunks, row.dim, row.chunk_tokens),
            (Some("a.txt"), 9, 20, 2, 2, 128)
        );
        assert_eq!(row.encoder_fingerprint, "enc");
        let chunks = reader.chunks(&row).unwrap();
        assert_eq!(chunks.texts, ["one. ", "two."]);
        assert_eq!(chunks.vectors, [0.5, -1.0, 2.0, 1e-7]);
        assert_eq!(chunks.dim, 2);
        assert_eq!(reader.doc_ids().unwrap(), ["a"]);
        assert_eq!(reader.encoders().unwrap(), ["enc"]);
        assert_eq!(
            reader.encoder_info().unwrap(),
            EncoderInfo { fingerprint: "enc".into(), source: "src".into(), dim: 2, chunk_tokens: 128 }
        );
        let stats = reader.stats().unwrap();
        assert_eq!((stats.documents, stats.chunks, stats.text_bytes, stats.vector_bytes), (1, 2, 9, 16));
        assert_eq!(stats.memory_bytes, 4);
        assert_eq!(stats.encoders, ["enc"]);
        match reader.document("b") {
            Err(Error::UnknownDoc { doc_id, db }) => assert_eq!((doc_id.as_str(), db.as_str()), ("b", "LABEL")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn full_document_joins_each_chunk_with_its_memory() {
        let conn = database();
        let document = Reader::new(&conn, "LABEL").full_document("a").unwrap();
        assert_eq!((document.doc_id.as_str(), document.source.as_str()), ("a", "a.txt"));
        assert_eq!((document.content_sha256.as_str(), document.n_bytes, document.n_tokens), ("sha", 9, 20));
        let [first, second] = &document.chunks[..] else { panic!("{:?}", document.chunks) };
        assert_eq!(
            *first,
            NewChunk {
                seq: 0,
                text: "one. ".into(),
                token_start: 0,
                token_end: 10,
                byte_start: 0,
                byte_end: 5,
                vector: vec![0.5, -1.0],
                memory: Some(StoredMemory { rcc_sha256: "rcc".into(), slots: 3, blob: vec![1, 2, 3, 4] }),
            }
        );
        assert_eq!((second.seq, second.byte_start, second.byte_end, second.memory.as_ref()), (1, 5, 9, None));
    }

    #[test]
    fn memory_is_returned_only_when_every_chunk_asked_has_it_from_this_encoder() {
        let conn = database();
        let reader = Reader::new(&conn, "LABEL");
        let row = reader.document("a").unwrap();
        assert_eq!(reader.memory(&row, &[0], "rcc").unwrap(), [(3, vec![1, 2, 3, 4])]);
        assert!(!reader.has_memory("a", "rcc").unwrap(), "chunk 1 has none");
        let detail = |result: Result<Vec<(usize, Vec<u8>)>>| match result {
            Err(Error::MemoryMissing { doc_id, db, detail }) => {
                assert_eq!((doc_id.as_str(), db.as_str()), ("a", "LABEL"));
                detail
            }
            other => panic!("{other:?}"),
        };
        assert_eq!(detail(reader.memory(&row, &[0, 1], "rcc")), " for chunk 1");
        let other = detail(reader.memory(&row, &[0], "other"));
        assert!(other.contains("chunk 0 has memory of RCC encoder rcc, the loaded one is other"), "{other}");

        conn.execute("INSERT INTO chunk_memory VALUES ('a', 1, 'rcc', 1, x'00')", []).unwrap();
        assert!(reader.has_memory("a", "rcc").unwrap());
        assert!(!reader.has_memory("a", "other").unwrap());
        assert_eq!(reader.memory(&row, &[1, 0], "rcc").unwrap(), [(1, vec![0]), (3, vec![1, 2, 3, 4])]);
    }

    /// Databases written before RCC have no `chunk_memory` table: "no memory", not an SQL error.
    #[test]
    fn a_database_that_predates_rcc_has_no_memory() {
        let conn = database();
        conn.execute_batch("DROP TABLE chunk_memory").unwrap();
        let reader = Reader::new(&conn, "LABEL");
        let row = reader.document("a").unwrap();
        match reader.memory(&row, &[0], "rcc") {
            Err(Error::MemoryMissing { detail, .. }) => assert_eq!(detail, " (the database predates RCC)"),
            other => panic!("{other:?}"),
        }
        assert_eq!(reader.stats().unwrap().memory_bytes, 0);
    }

    #[test]
    fn check_schema_refuses_foreign_databases_and_other_versions() {
        let empty = Connection::open_in_memory().unwrap();
        let err = Reader::new(&empty, "LABEL").check_schema().unwrap_err().to_string();
        assert!(err.contains("not an e2llm database"), "{err}");

        let conn = database();
        conn.execute("UPDATE e2llm_meta SET value = '2' WHERE key = 'schema_version'", []).unwrap();
        let err = Reader::new(&conn, "LABEL").check_schema().unwrap_err().to_string();
        assert!(err.contains("schema version 2") && err.contains("reads version 1"), "{err}");
        // The first releases wrote no version row, or no e2llm_meta table: version 1.
        conn.execute("DELETE FROM e2llm_meta", []).unwrap();
        Reader::new(&conn, "LABEL").check_schema().unwrap();
        conn.execute_batch("DROP TABLE e2llm_meta").unwrap();
        Reader::new(&conn, "LABEL").check_schema().unwrap();
    }

    #[test]
    fn encoder_info_needs_exactly_one_configuration() {
        let conn = database();
        conn.execute_batch(
            "INSERT INTO models (id, encoder_sha256, encoder_source, dim, chunk_tokens) VALUES (2, 'enc', 'src', 2, 256);",
        )
        .unwrap();
        let reader = Reader::new(&conn, "LABEL");
        assert_eq!(reader.encoder_info().unwrap().chunk_tokens, 128, "a model no document uses does not count");
        conn.execute(
            "INSERT INTO documents (doc_id, content_sha256, n_bytes, n_tokens, n_chunks, model_id)
             VALUES ('b', 'sha', 0, 0, 0, 2)",
            [],
        )
        .unwrap();
        let err = reader.encoder_info().unwrap_err().to_string();
        assert!(err.contains("2 encoder configurations (chunk sizes [128, 256])"), "{err}");
        conn.execute_batch("DELETE FROM chunk_memory; DELETE FROM chunks; DELETE FROM documents").unwrap();
        let err = reader.encoder_info().unwrap_err().to_string();
        assert!(err.ends_with("no documents"), "{err}");
    }

    #[test]
    fn a_vector_of_the_wrong_length_names_its_chunk() {
        let conn = database();
        conn.execute("UPDATE chunks SET vector = x'0000' WHERE seq = 1", []).unwrap();
        let reader = Reader::new(&conn, "LABEL");
        let row = reader.document("a").unwrap();
        for err in [reader.chunks(&row).unwrap_err(), reader.full_document("a").unwrap_err()] {
            let message = err.to_string();
            assert!(message.contains("document `a` chunk 1"), "{message}");
            assert!(message.contains("expected 8"), "{message}");
        }
    }
}
