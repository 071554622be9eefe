//! Nightly-job semantics: a run killed with SIGKILL leaves no half-written document and the next
//! run completes it; readers keep answering while a batch writes (WAL + busy timeout).

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use e2llm::store::Store;

fn compress_command(db: &Path, input: &Path) -> Command {
    let mut command = Command::new(common::bin());
    command
        .args(["compress", "--db", db.to_str().unwrap(), input.to_str().unwrap(), "--json", "--threads", "2"])
        .env("E2LLM_MODELS", common::models_dir())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// A JSONL corpus of `copies` × the example addresses (distinct ids, a few hundred chunks each copy).
fn corpus(dir: &Path, copies: usize) -> std::path::PathBuf {
    let path = dir.join("corpus.jsonl");
    let mut lines = Vec::new();
    for copy in 0..copies {
        for entry in std::fs::read_dir(common::examples_dir()).unwrap() {
            let entry = entry.unwrap();
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let id = format!("{copy}/{}", entry.file_name().to_string_lossy());
            lines.push(serde_json::json!({"id": id, "text": text}).to_string());
        }
    }
    lines.sort();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

/// Every document row has exactly its chunks, numbered 0..n, and the file is intact. A run killed
/// before it created the schema leaves no database, or one without tables (the schema is created in one
/// transaction): that holds 0 documents.
fn assert_consistent(db: &Path) -> usize {
    if !db.exists() {
        return 0;
    }
    let conn = rusqlite::Connection::open(db).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |r| r.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let tables: i64 =
        conn.query_row("SELECT count(*) FROM sqlite_master WHERE type = 'table'", [], |r| r.get(0)).unwrap();
    if tables == 0 {
        return 0;
    }
    let bad: i64 = conn
        .query_row(
            "SELECT count(*) FROM documents d WHERE d.n_chunks != (SELECT count(*) FROM chunks c WHERE c.doc_id = d.doc_id)
                OR d.n_chunks != (SELECT coalesce(max(seq), -1) + 1 FROM chunks c WHERE c.doc_id = d.doc_id)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bad, 0, "documents with missing or extra chunks");
    let orphans: i64 = conn
        .query_row("SELECT count(*) FROM chunks WHERE doc_id NOT IN (SELECT doc_id FROM documents)", [], |r| r.get(0))
        .unwrap();
    assert_eq!(orphans, 0, "chunks without a document");
    conn.query_row("SELECT count(*) FROM documents", [], |r| r.get::<_, i64>(0)).unwrap() as usize
}

fn snapshot(db: &Path) -> Vec<e2llm::store::NewDocument> {
    let store = Store::open_read_only(db).unwrap();
    let reader = store.reader();
    reader.doc_ids().unwrap().iter().map(|id| reader.full_document(id).unwrap()).collect()
}

#[test]
fn killed_runs_leave_whole_documents_and_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let input = corpus(dir.path(), 2);
    let clean = dir.path().join("clean.db");
    assert!(compress_command(&clean, &input).output().unwrap().status.success());
    let expected = snapshot(&clean);

    let db = dir.path().join("killed.db");
    let mut kills = 0;
    // Kill at several points: early (model loading), mid-batch, later.
    for delay_ms in [300u64, 2500, 4000, 6000, 9000] {
        let mut child = compress_command(&db, &input).spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        assert_consistent(&db);
    }
    assert!(kills >= 3, "the runs finished too fast to be killed ({kills} kills)");
    let rerun = compress_command(&db, &input).output().unwrap();
    assert!(rerun.status.success(), "{}", String::from_utf8_lossy(&rerun.stderr));
    assert_eq!(assert_consistent(&db), expected.len());
    assert_eq!(snapshot(&db), expected, "after kills and a re-run the database equals a clean run");
}

#[test]
fn readers_keep_working_while_a_batch_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.db");
    let seed = dir.path().join("seed.txt");
    std::fs::write(&seed, "The observatory on Mount Lemmon was built in 1956 by the air force.").unwrap();
    assert!(compress_command(&db, &seed).output().unwrap().status.success());

    let input = corpus(dir.path(), 3);
    let mut writer = compress_command(&db, &input).spawn().unwrap();
    let started = Instant::now();
    let mut reads = 0;
    let mut writer_done = false;
    while started.elapsed() < Duration::from_secs(120) {
        let out = Command::new(common::bin())
            .args([
                "ask",
                "--db",
                db.to_str().unwrap(),
                "--doc",
                seed.to_str().unwrap(),
                "--mode",
                "rag",
                "--max-new-tokens",
                "4",
                "When was it built?",
            ])
            .env("E2LLM_MODELS", common::models_dir())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "reader failed during the write: {stderr}");
        assert!(!stderr.contains("locked"));
        reads += 1;
        let info = Command::new(common::bin())
            .args(["info", "--db", db.to_str().unwrap(), "--json"])
            .env("E2LLM_MODELS", common::models_dir())
            .output()
            .unwrap();
        assert!(info.status.success(), "info failed during the write: {}", String::from_utf8_lossy(&info.stderr));
        if writer.try_wait().unwrap().is_some() {
            writer_done = true;
            break;
        }
    }
    // Reading stops after two minutes; the write itself may take longer on a loaded machine (what is
    // tested is that reads work while it runs, not its speed): it must finish, and succeed.
    let status = if writer_done {
        writer.wait().unwrap()
    } else {
        common::output_within(writer, Duration::from_secs(900)).status
    };
    assert!(status.success(), "the writer failed");
    assert!(reads >= 2, "only {reads} reads overlapped the write");
    assert_eq!(assert_consistent(&db), 1 + 3 * std::fs::read_dir(common::examples_dir()).unwrap().count());
}

/// One reader process's run: when it started and ended, and what went wrong if anything did.
struct Read {
    started: Instant,
    ended: Instant,
    failure: Option<String>,
}

/// Runs `read` again and again until `stop` is set; every run is recorded.
fn reader_loop(stop: &AtomicBool, read: impl Fn() -> Output, check: impl Fn(&Output) -> bool) -> Vec<Read> {
    let mut reads = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let out = read();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        let failed = !out.status.success() || !check(&out) || stderr.contains("locked") || stderr.contains("busy");
        let failure = failed.then(|| format!("{}: {stderr} {}", out.status, String::from_utf8_lossy(&out.stdout)));
        reads.push(Read { started, ended: Instant::now(), failure });
    }
    reads
}

/// A JSONL corpus of the first `documents` pieces of `paragraphs` paragraphs of the example addresses:
/// many small documents, so a batch commits several groups (32 documents per transaction) as it goes.
fn paragraph_corpus(dir: &Path, paragraphs: usize, documents: usize) -> std::path::PathBuf {
    let path = dir.join("paragraphs.jsonl");
    let mut files: Vec<_> = std::fs::read_dir(common::examples_dir()).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    let mut lines = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let pieces: Vec<&str> = text.split("\n\n").filter(|p| !p.trim().is_empty()).collect();
        for (i, piece) in pieces.chunks(paragraphs).enumerate() {
            let id = format!("{}#{i}", file.file_name().unwrap().to_string_lossy());
            lines.push(serde_json::json!({"id": id, "text": piece.join("\n\n")}).to_string());
        }
    }
    assert!(lines.len() >= documents, "the examples give only {} pieces", lines.len());
    std::fs::write(&path, lines[..documents].join("\n")).unwrap();
    path
}

/// Three `ask` processes at a time, and the extension in a `sqlite3` shell, read while one `compress`
/// commits a corpus group by group: no reader fails or meets a lock, each reads while commits land,
/// and no write is lost.
#[test]
fn several_processes_ask_while_a_batch_writes() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("busy.db");
    let seed = dir.path().join("seed.txt");
    std::fs::write(&seed, "The observatory on Mount Lemmon was built in 1956 by the air force.").unwrap();
    assert!(compress_command(&db, &seed).output().unwrap().status.success());
    let pieces = 120; // four commits; about half the examples' text to encode
    let input = paragraph_corpus(dir.path(), 3, pieces);

    let ask = || {
        Command::new(common::bin())
            .args(["ask", "--db", db.to_str().unwrap(), "--doc", seed.to_str().unwrap(), "--mode", "rag"])
            .args(["--max-new-tokens", "2", "--threads", "1", "When was it built?"])
            .env("E2LLM_MODELS", common::models_dir())
            .output()
            .unwrap()
    };
    // The shell is the host: its connection gets the busy timeout e2llm's own connections have.
    let sql = format!(
        ".timeout 60000\nSELECT count(*) >= 1 FROM documents;\n\
         SELECT length(e2llm_ask('{}', 'When was it built?', '{{\"max_new_tokens\": 2}}')) > 0;",
        seed.display()
    );
    let documents = || Store::open_read_only(&db).unwrap().reader().stats().unwrap().documents;
    let stop = AtomicBool::new(false);
    let (commits, status, readers) = std::thread::scope(|scope| {
        let mut writer = compress_command(&db, &input).spawn().unwrap();
        let mut readers: Vec<_> = (0..3).map(|_| scope.spawn(|| reader_loop(&stop, ask, |_| true))).collect();
        readers.push(scope.spawn(|| {
            reader_loop(&stop, || common::sqlite3(&db, &sql), |out| out.stdout == b"1\n1\n" && out.stderr.is_empty())
        }));
        // When each group's commit became visible (polled).
        let (started, mut commits, mut seen) = (Instant::now(), Vec::new(), documents());
        let status = loop {
            if let Some(status) = writer.try_wait().unwrap() {
                break Some(status);
            }
            if started.elapsed() > Duration::from_secs(130) {
                writer.kill().unwrap();
                writer.wait().unwrap();
                break None;
            }
            let now = documents();
            if now != seen {
                seen = now;
                commits.push(Instant::now());
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        stop.store(true, Ordering::Relaxed);
        (commits, status, readers.into_iter().map(|r| r.join().unwrap()).collect::<Vec<_>>())
    });
    assert!(status.is_some_and(|s| s.success()), "the writer failed or did not finish in 130 s: {status:?}");
    assert!(commits.len() >= 2, "only {} commits seen while writing", commits.len());
    let (first, last) = (commits[0], *commits.last().unwrap());
    for (i, reads) in readers.iter().enumerate() {
        let during = reads.iter().filter(|r| r.started <= last && r.ended >= first).count();
        eprintln!("reader {i}: {} reads, {during} while {} commits landed", reads.len(), commits.len());
        if let Some(failure) = reads.iter().find_map(|r| r.failure.as_ref()) {
            panic!("reader {i} failed during the write: {failure}");
        }
        assert!(during >= 1, "reader {i} never read while commits landed");
    }
    assert_eq!(assert_consistent(&db), 1 + pieces, "documents lost or extra after the write");
}
