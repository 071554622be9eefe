//! Faults during a batch: a full disk is a clear error and loses nothing already stored.

mod common;

use e2llm::compress::{compress, Target};
use e2llm::store::Store;

fn integrity(store: &Store) -> String {
    store.connection().query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap()
}

/// Documents whose stored chunk count differs from their row (a half-written document).
fn partial_documents(store: &Store) -> i64 {
    store
        .connection()
        .query_row(
            "SELECT count(*) FROM documents d WHERE d.n_chunks != (SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id)",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn a_full_disk_is_a_clear_error_and_leaves_the_database_intact() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("full.db");
    let corpus = common::examples_dir();
    let first = [corpus.join("1790-Washington-1.txt")];
    {
        let mut store = Store::open(&db).unwrap();
        compress(engine, Target::Database(&mut store), &first, &Default::default()).unwrap();
        // Simulate a disk that is full a few pages from now.
        let pages: i64 = store.connection().query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        store.connection().execute_batch(&format!("PRAGMA max_page_count = {}", pages + 3)).unwrap();
        let err = compress(engine, Target::Database(&mut store), std::slice::from_ref(&corpus), &Default::default())
            .unwrap_err();
        let message = err.to_string();
        assert!(message.contains("full") && message.contains("full.db"), "unclear error: {message}");
        assert_eq!(integrity(&store), "ok");
        assert_eq!(partial_documents(&store), 0);
        let ids = store.reader().doc_ids().unwrap();
        assert!(ids.contains(&first[0].to_string_lossy().into_owned()), "the earlier document was lost: {ids:?}");
    }
    // With space again, a re-run completes every document.
    let mut store = Store::open(&db).unwrap();
    let summary =
        compress(engine, Target::Database(&mut store), std::slice::from_ref(&corpus), &Default::default()).unwrap();
    assert_eq!(summary.failed, 0);
    assert_eq!(store.reader().doc_ids().unwrap().len(), 1 + std::fs::read_dir(&corpus).unwrap().count());
    assert_eq!(integrity(&store), "ok");
    assert_eq!(partial_documents(&store), 0);
}
