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
                memory: None,
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
fn a_database_of_another_schema_version_is_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("docs.db");
    let mut store = Store::open(&path).unwrap();
    let model = store.ensure_model(&encoder("enc")).unwrap();
    store.write_documents(model, &[document("a", &["one. ", "two."], 1.0)]).unwrap();
    drop(store);
    let version = |path: &std::path::Path| -> String {
        rusqlite::Connection::open(path)
            .unwrap()
            .query_row("SELECT value FROM e2llm_meta WHERE key = 'schema_version'", [], |r| r.get(0))
            .unwrap()
    };
    assert_eq!(version(&path), e2llm::store::SCHEMA_VERSION);
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute("UPDATE e2llm_meta SET value = '99' WHERE key = 'schema_version'", [])
        .unwrap();
    for err in [Store::open(&path).err(), Store::open_read_only(&path).err()] {
        let message = err.expect("another schema version is refused").to_string();
        assert!(message.contains("schema version 99") && message.contains("reads version 1"), "{message}");
    }
    // Refused, not rewritten: the version row is still the other one.
    assert_eq!(version(&path), "99");
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

/// The import's target for the property tests below: the encoder of the export, a document of its
/// own and one whose id the export also has (with other contents), so any write would show.
fn import_target(path: &std::path::Path) -> Store {
    let mut store = Store::open(path).unwrap();
    let model = store.ensure_model(&encoder("abc")).unwrap();
    store.write_documents(model, &[document("mine", &["kept"], 9.0), document("doc-1", &["older"], 8.0)]).unwrap();
    store
}

/// Every document of `store`, and whether `PRAGMA integrity_check` is ok.
fn contents(store: &Store) -> (Vec<NewDocument>, bool) {
    let reader = store.reader();
    let documents = reader.doc_ids().unwrap().iter().map(|id| reader.full_document(id).unwrap()).collect();
    let integrity: String = store.connection().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    (documents, integrity == "ok")
}

/// A valid export (4 documents, 8 chunks, zstd) as bytes.
fn valid_export() -> &'static [u8] {
    static BYTES: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BYTES.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(&dir.path().join("source.db")).unwrap();
        let model = store.ensure_model(&encoder("abc")).unwrap();
        let documents: Vec<NewDocument> =
            (0..4).map(|i| document(&format!("doc-{i}"), &["alpha ", "beta ünï"], i as f32)).collect();
        store.write_documents(model, &documents).unwrap();
        let out = dir.path().join("export.parquet");
        e2llm::export::export(&store.reader(), &out).unwrap();
        std::fs::read(out).unwrap()
    })
}

/// Imports `bytes` as a Parquet file into a fresh [`import_target`]. Whatever the bytes, no panic; on an
/// error the database is unchanged; on success it holds exactly what the file says, intact. Returns
/// whether the import succeeded.
fn import_bytes(bytes: &[u8]) -> Result<bool, proptest::test_runner::TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.parquet");
    std::fs::write(&file, bytes).unwrap();
    let mut store = import_target(&dir.path().join("target.db"));
    let before = contents(&store);
    let result = e2llm::export::import(&mut store, &file);
    let after = contents(&store);
    proptest::prop_assert!(after.1, "integrity check failed after import: {:?}", result.as_ref().err());
    match result {
        Err(e) => {
            proptest::prop_assert!(!e.to_string().is_empty());
            proptest::prop_assert_eq!(after.0, before.0, "a failed import changed the database: {}", e);
            Ok(false)
        }
        Ok(_) => {
            let (_, imported) = e2llm::export::read(&file).unwrap();
            for document in &imported {
                proptest::prop_assert!(after.0.contains(document), "`{}` not stored as read", document.doc_id);
            }
            proptest::prop_assert!(after.0.iter().any(|d| d.doc_id == "mine"), "import removed a document");
            Ok(true)
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(64))]

    /// Random bytes, bare or framed by Parquet's magic and a footer length, are refused.
    #[test]
    fn import_refuses_random_bytes(
        body in proptest::collection::vec(proptest::num::u8::ANY, 0..2048),
        framed in proptest::bool::ANY,
        footer in 0u32..4096,
    ) {
        let bytes = if framed {
            [b"PAR1".as_slice(), &body, &footer.to_le_bytes(), b"PAR1"].concat()
        } else {
            body
        };
        proptest::prop_assert!(!import_bytes(&bytes)?, "random bytes were imported");
    }

    /// Every proper prefix of a valid export is refused.
    #[test]
    fn import_refuses_truncated_exports(fraction in 0.0f64..1.0) {
        let valid = valid_export();
        let length = (valid.len() as f64 * fraction) as usize;
        proptest::prop_assert!(!import_bytes(&valid[..length])?, "a {length}-byte prefix was imported");
    }

    /// A valid export with 1 to 8 bits flipped: refused with the database unchanged, or (a flip in a
    /// value that stays valid) imported exactly as it reads; never a panic or a partial import.
    #[test]
    fn import_of_bit_flipped_exports_is_all_or_nothing(
        flips in proptest::collection::vec((proptest::num::usize::ANY, 0u8..8), 1..=8),
    ) {
        let mut bytes = valid_export().to_vec();
        for (position, bit) in flips {
            let len = bytes.len();
            bytes[position % len] ^= 1 << bit;
        }
        import_bytes(&bytes)?;
    }
}

#[test]
fn the_valid_export_used_above_imports() {
    assert!(import_bytes(valid_export()).unwrap());
}
