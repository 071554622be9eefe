//! RCC mode end to end: `compress --rcc` stores each chunk's memory with its document (and Parquet
//! carries it), `ask --mode rcc` reads it in front of the prompt, memory of another RCC encoder or none
//! at all is a clear error, a killed `--rcc` run leaves whole documents, and SQL refuses bad options.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use e2llm::store::Store;

fn e2llm(dir: &Path, args: &[&str]) -> Output {
    Command::new(common::bin()).args(args).current_dir(dir).env("E2LLM_MODELS", common::models_dir()).output().unwrap()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn manifest() -> serde_json::Value {
    let text = std::fs::read_to_string(common::models_dir().join("manifest.json")).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert!(manifest["rcc"].is_object(), "no RCC encoder in the models: run `make setup` (onnx/rcc/lora.safetensors)");
    manifest
}

/// `harbour.txt` (one chunk) compressed with `--rcc` into `dir/t.db`.
fn rcc_database(dir: &Path) -> PathBuf {
    let db = common::harbour_database(dir);
    ok(&e2llm(dir, &["compress", "--db", "t.db", "--rcc", "harbour.txt"]));
    db
}

fn ask_rcc(dir: &Path, question: &str) -> Output {
    e2llm(
        dir,
        &["ask", "--db", "t.db", "--doc", "harbour.txt", "--mode", "rcc", "--json", "--max-new-tokens", "8", question],
    )
}

#[test]
fn memory_is_stored_with_its_document_asked_and_carried_by_parquet() {
    let manifest = manifest();
    let dir = tempfile::tempdir().unwrap();
    let db = rcc_database(dir.path());
    let conn = rusqlite::Connection::open(&db).unwrap();
    let (chunks, memories, slots, bytes): (i64, i64, i64, i64) = conn
        .query_row(
            "SELECT (SELECT count(*) FROM chunks), count(*), sum(slots), sum(length(memory)) FROM chunk_memory",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap();
    assert_eq!((chunks, memories), (1, 1), "one chunk, one memory (added to the document compressed before)");
    let decoder = &manifest["decoder"];
    let per_slot = decoder["layers"].as_i64().unwrap()
        * 2
        * decoder["kv_heads"].as_i64().unwrap()
        * decoder["head_dim"].as_i64().unwrap();
    assert_eq!(bytes, slots * per_slot * 2, "float16 [layers, 2, kv_heads, slots, head_dim]");
    assert!(slots >= 1 && slots <= 256 / manifest["rcc"]["ratio"].as_i64().unwrap() + 1);

    let answer: serde_json::Value =
        serde_json::from_str(&ok(&ask_rcc(dir.path(), "Who kept the lighthouse?"))).unwrap();
    assert_eq!(answer["mode"], "rcc");
    assert_eq!(answer["chunks"], serde_json::json!([0]));
    assert!(answer["answer"].as_str().is_some_and(|a| !a.is_empty()), "{answer}");
    let question_only: serde_json::Value = serde_json::from_str(&ok(&e2llm(
        dir.path(),
        &[
            "ask",
            "--db",
            "t.db",
            "--doc",
            "harbour.txt",
            "--mode",
            "question-only",
            "--json",
            "--max-new-tokens",
            "1",
            "Who kept the lighthouse?",
        ],
    )))
    .unwrap();
    assert_eq!(
        answer["prompt_tokens"].as_i64().unwrap(),
        question_only["prompt_tokens"].as_i64().unwrap() + slots,
        "rcc reads the memory slots in front of the question-only prompt"
    );

    // Parquet round trip: the memory comes back byte for byte.
    ok(&e2llm(dir.path(), &["export", "--db", "t.db", "--out", "t.parquet"]));
    ok(&e2llm(dir.path(), &["import", "--db", "back.db", "t.parquet"]));
    let read = |path: &Path| Store::open_read_only(path).unwrap().reader().full_document("harbour.txt").unwrap();
    let (original, back) = (read(&db), read(&dir.path().join("back.db")));
    assert!(original.chunks[0].memory.is_some());
    assert_eq!(original, back);
}

#[test]
fn missing_or_foreign_memory_is_a_clear_error_and_compress_adds_it() {
    manifest();
    let dir = tempfile::tempdir().unwrap();
    common::harbour_database(dir.path());
    let out = ask_rcc(dir.path(), "When did the harbour open?");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("has no RCC memory") && stderr.contains("--rcc"), "{stderr}");

    // An unchanged document is not skipped by `--rcc` while its memory is missing: it gets it.
    let summary: serde_json::Value =
        serde_json::from_str(&ok(&e2llm(dir.path(), &["compress", "--db", "t.db", "--rcc", "--json", "harbour.txt"])))
            .unwrap();
    assert_eq!((summary["replaced"].as_i64(), summary["unchanged"].as_i64()), (Some(1), Some(0)));
    ok(&ask_rcc(dir.path(), "When did the harbour open?"));
    // A second run skips it.
    let again: serde_json::Value =
        serde_json::from_str(&ok(&e2llm(dir.path(), &["compress", "--db", "t.db", "--rcc", "--json", "harbour.txt"])))
            .unwrap();
    assert_eq!(again["unchanged"].as_i64(), Some(1));

    let conn = rusqlite::Connection::open(dir.path().join("t.db")).unwrap();
    conn.execute("UPDATE chunk_memory SET rcc_sha256 = 'another-rcc-encoder'", []).unwrap();
    let out = ask_rcc(dir.path(), "When did the harbour open?");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("another-rcc-encoder"), "{stderr}");

    conn.execute(
        "UPDATE chunk_memory SET rcc_sha256 = ?1, memory = zeroblob(10)",
        [manifest()["rcc"]["fingerprint"].as_str().unwrap()],
    )
    .unwrap();
    let out = ask_rcc(dir.path(), "When did the harbour open?");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("memory BLOB has 10 bytes"), "{stderr}");
}

#[test]
fn models_without_an_rcc_encoder_say_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let models = dir.path().join("models");
    std::fs::create_dir(&models).unwrap();
    let mut manifest = manifest();
    let rcc_file = manifest["rcc"]["file"].as_str().unwrap().to_string();
    manifest.as_object_mut().unwrap().remove("rcc");
    manifest["files"].as_object_mut().unwrap().remove(&rcc_file);
    for entry in std::fs::read_dir(common::models_dir()).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        if name != "manifest.json" && name.to_string_lossy() != rcc_file {
            std::os::unix::fs::symlink(std::fs::canonicalize(entry.path()).unwrap(), models.join(&name)).unwrap();
        }
    }
    std::fs::write(models.join("manifest.json"), serde_json::to_string(&manifest).unwrap()).unwrap();
    std::fs::write(dir.path().join("a.txt"), "A short document.").unwrap();
    let out = Command::new(common::bin())
        .args(["compress", "--db", "t.db", "--rcc", "a.txt"])
        .current_dir(dir.path())
        .env("E2LLM_MODELS", &models)
        .env("ORT_DYLIB_PATH", common::ort_library())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && stderr.contains("needs the RCC encoder") && stderr.contains("make train-rcc"),
        "{stderr}"
    );
}

#[test]
fn killed_rcc_runs_leave_whole_documents_with_their_memory() {
    manifest();
    let dir = tempfile::tempdir().unwrap();
    let corpus = dir.path().join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    for name in ["1941-Roosevelt-1.txt", "1790-Washington-1.txt", "2002-Bush-1.txt"] {
        std::fs::copy(common::examples_dir().join(name), corpus.join(name)).unwrap();
    }
    let compress = |db: &str| {
        let mut command = Command::new(common::bin());
        command
            .args(["compress", "--db", db, "--rcc", "--threads", "2", "corpus"])
            .current_dir(dir.path())
            .env("E2LLM_MODELS", common::models_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        command
    };
    assert!(compress("clean.db").status().unwrap().success());
    let mut kills = 0;
    for delay_ms in [500u64, 3000, 6000] {
        let mut child = compress("killed.db").spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap(); // SIGKILL
            kills += 1;
        }
        child.wait().unwrap();
        let path = dir.path().join("killed.db");
        if path.exists() {
            let conn = rusqlite::Connection::open(&path).unwrap();
            let partial: i64 = conn
                .query_row(
                    "SELECT count(*) FROM documents d WHERE d.n_chunks != (SELECT count(*) FROM chunk_memory m WHERE m.doc_id = d.doc_id)",
                    [],
                    |r| r.get(0),
                )
                .unwrap();
            assert_eq!(partial, 0, "a document visible without all its memory");
        }
    }
    assert!(kills >= 2, "the runs finished too fast to be killed ({kills} kills)");
    assert!(compress("killed.db").status().unwrap().success());
    let snapshot = |name: &str| {
        let store = Store::open_read_only(&dir.path().join(name)).unwrap();
        let reader = store.reader();
        reader.doc_ids().unwrap().iter().map(|id| reader.full_document(id).unwrap()).collect::<Vec<_>>()
    };
    let clean = snapshot("clean.db");
    assert!(clean.iter().all(|d| d.chunks.iter().all(|c| c.memory.is_some())));
    assert_eq!(snapshot("killed.db"), clean, "after kills and a re-run the database equals a clean run");
}

#[test]
fn sql_rcc_answers_and_refuses_bad_options() {
    manifest();
    let dir = tempfile::tempdir().unwrap();
    let db = rcc_database(dir.path());
    let out = common::sqlite3(
        &db,
        "SELECT 'answer:' || (length(e2llm_ask('harbour.txt', 'Who kept the lighthouse?', '{\"mode\": \"rcc\", \"max_new_tokens\": 4}')) > 0);\n\
         SELECT e2llm_ask('harbour.txt', 'q', '{\"mode\": \"rcc\", \"memory_chunks\": 0}');\n\
         SELECT e2llm_ask('harbour.txt', 'q', '{\"mode\": \"rcc\", \"memory_chunks\": \"all\"}');\n\
         SELECT e2llm_ask('harbour.txt', 'q', '{\"mode\": \"rcc\", \"extractive\": true}');\n\
         SELECT 'alive', count(*) FROM chunk_memory;",
    );
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("answer:1"), "{stdout} {stderr}");
    for expected in [
        "memory_chunks must be at least 1",
        "option `memory_chunks` must be a non-negative integer",
        "mode rcc has none",
    ] {
        assert!(stderr.contains(expected), "expected `{expected}`: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stdout.contains("alive|1"), "{stdout}");
}
