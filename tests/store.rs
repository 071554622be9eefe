//! SQLite store: round trip, replacement in one transaction, encoder fingerprint guard, bad files.

use e2llm::store::{EncoderInfo, NewChunk, NewDocument, Store};
use e2llm::Error;

fn encoder(fingerprint: &str) -> EncoderInfo {
    EncoderInfo { fingerprint: fingerprint.into(), source: "test".into(), dim: 3, chunk_tokens: 128 }
}

fn document(doc_id: &str, texts: &[&str], seed: f32) -> NewDocument {
    let mut offset = 0;
    let chunks = texts
        .iter()
        .enumerate()
        .map(|(seq, text)| {
            let chunk = NewChunk {
                seq,
                text: text.to_string(),
                token_start: seq * 10,
                token_end: seq * 10 + 10,
                byte_start: offset,
                byte_end: offset + text.len(),
                vector: vec![seed, seq as f32, -1.5e-7],
            };
            offset += text.len();
            chunk
        })
        .collect();
    NewDocument {
        doc_id: doc_id.into(),
        source: format!("{doc_id}.txt"),
        content_sha256: format!("sha-{seed}"),
        n_bytes: offset,
        n_tokens: texts.len() * 10,
        chunks,
    }
}

#[test]
fn documents_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = Store::open(&path).unwrap();
    let model = store.ensure_model(&encoder("abc")).unwrap();
    store.write_documents(model, &[document("a", &["one. ", "two."], 0.25), document("b", &["x"], 2.0)]).unwrap();
    drop(store);

    let store = Store::open_read_only(&path).unwrap();
    let row = store.reader().document("a").unwrap();
    assert_eq!((row.n_chunks, row.n_tokens, row.n_bytes, row.dim), (2, 20, 9, 3));
    assert_eq!(row.encoder_fingerprint, "abc");
    let chunks = store.reader().chunks(&row).unwrap();
    assert_eq!(chunks.texts, vec!["one. ", "two."]);
    assert_eq!(chunks.vectors, vec![0.25, 0.0, -1.5e-7, 0.25, 1.0, -1.5e-7]);
    assert_eq!(store.reader().doc_ids().unwrap(), vec!["a", "b"]);
    let stats = store.reader().stats().unwrap();
    assert_eq!((stats.documents, stats.chunks, stats.vector_bytes), (2, 3, 36));
    assert!(matches!(store.reader().document("nope"), Err(Error::UnknownDoc { .. })));
}

#[test]
fn replacing_a_document_replaces_all_its_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("t.db")).unwrap();
    let model = store.ensure_model(&encoder("abc")).unwrap();
    store.write_documents(model, &[document("a", &["1", "2", "3"], 1.0)]).unwrap();
    assert_eq!(store.content_hash("a").unwrap(), Some(("sha-1".to_string(), model)));
    store.write_documents(model, &[document("a", &["only"], 2.0)]).unwrap();
    let row = store.reader().document("a").unwrap();
    assert_eq!(row.n_chunks, 1);
    assert_eq!(store.reader().chunks(&row).unwrap().texts, vec!["only"]);
    assert_eq!(store.content_hash("a").unwrap().unwrap().0, "sha-2");
}

#[test]
fn a_failed_write_leaves_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("t.db")).unwrap();
    let model = store.ensure_model(&encoder("abc")).unwrap();
    // The second document repeats a chunk seq: the primary key fails mid-transaction.
    let mut bad = document("b", &["x", "y"], 1.0);
    bad.chunks[1].seq = 0;
    assert!(store.write_documents(model, &[document("a", &["ok"], 1.0), bad]).is_err());
    assert!(store.reader().doc_ids().unwrap().is_empty(), "no part of the failed transaction is visible");
    assert_eq!(store.reader().stats().unwrap().chunks, 0);
}

#[test]
fn vectors_of_another_encoder_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("t.db")).unwrap();
    let model = store.ensure_model(&encoder("abc")).unwrap();
    store.write_documents(model, &[document("a", &["x"], 1.0)]).unwrap();
    let err = store.ensure_model(&encoder("other")).unwrap_err();
    assert!(matches!(err, Error::EncoderMismatch { .. }), "{err}");
    assert!(err.to_string().contains("cannot be mixed"));
}

/// SQLite's own SQLITE_READONLY (here from `PRAGMA query_only`; in life a read-only mount, or a file
/// made read-only while open) is the same read-only error as the up-front check, naming the file.
#[test]
fn sqlite_read_only_errors_name_the_database_as_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let mut store = Store::open(&path).unwrap();
    let model = store.ensure_model(&encoder("abc")).unwrap();
    store.connection().execute_batch("PRAGMA query_only = 1").unwrap();
    let err = store.write_documents(model, &[document("a", &["x"], 1.0)]).unwrap_err();
    assert!(matches!(err, Error::ReadOnly { .. }), "{err}");
    let message = err.to_string();
    assert!(message.contains(&format!("database {} is read-only", path.display())), "{message}");
    assert!(store.reader().doc_ids().unwrap().is_empty());
}

#[test]
fn corrupt_and_foreign_files_get_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::write(&garbage, vec![0x5a; 8192]).unwrap();
    let err = Store::open(&garbage).err().expect("garbage is refused").to_string();
    assert!(err.contains("not an SQLite database or is corrupt"), "{err}");
    let err = Store::open_read_only(&garbage).err().expect("garbage is refused").to_string();
    assert!(err.contains("not an SQLite database or is corrupt"), "{err}");

    let foreign = dir.path().join("foreign.db");
    rusqlite::Connection::open(&foreign).unwrap().execute_batch("CREATE TABLE t (x)").unwrap();
    let err = Store::open_read_only(&foreign).err().expect("foreign db is refused").to_string();
    assert!(err.contains("not an e2llm database"), "{err}");

    let err = Store::open_read_only(&dir.path().join("missing.db")).err().unwrap().to_string();
    assert!(err.contains("no such database file"), "{err}");
}

#[test]
fn parquet_export_import_round_trip_is_identical() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::open(&dir.path().join("a.db")).unwrap();
    let model = store.ensure_model(&encoder("abc")).unwrap();
    let documents: Vec<NewDocument> = (0..30)
        .map(|i| document(&format!("doc-{i:02}"), &["alpha ", "beta ", "gamma ünï"][..1 + i % 3], i as f32 * 0.5))
        .collect();
    store.write_documents(model, &documents).unwrap();
    let out = dir.path().join("export.parquet");
    let exported = e2llm::export::export(&store.reader(), &out).unwrap();
    assert_eq!((exported.rows, exported.documents), (60, 30));
    assert!(!dir.path().join("export.parquet.tmp").exists());

    let mut copy = Store::open(&dir.path().join("b.db")).unwrap();
    let imported = e2llm::export::import(&mut copy, &out).unwrap();
    assert_eq!((imported.rows, imported.documents), (60, 30));
    for doc in &documents {
        assert_eq!(&copy.reader().full_document(&doc.doc_id).unwrap(), doc);
    }
    // Importing into a database of another encoder is refused.
    let mut other = Store::open(&dir.path().join("c.db")).unwrap();
    let other_model = other.ensure_model(&encoder("zzz")).unwrap();
    other.write_documents(other_model, &[document("x", &["x"], 1.0)]).unwrap();
    assert!(matches!(e2llm::export::import(&mut other, &out), Err(Error::EncoderMismatch { .. })));
}

#[test]
fn importing_a_foreign_parquet_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("foreign.parquet");
    std::fs::write(&path, b"PAR1 not really").unwrap();
    let mut store = Store::open(&dir.path().join("t.db")).unwrap();
    let err = e2llm::export::import(&mut store, &path).unwrap_err().to_string();
    assert!(err.contains("not a readable Parquet file"), "{err}");
}
