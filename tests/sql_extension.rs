//! The loadable extension driven from the real `sqlite3` shell and from Python's sqlite3.
//! `make test` builds the extension first (`make ext`).

mod common;

use std::process::Command;

use common::{extension, harbour_database, sqlite3};

#[test]
fn ask_from_the_sqlite3_shell() {
    let dir = tempfile::tempdir().unwrap();
    let db = harbour_database(dir.path());
    let out = sqlite3(
        &db,
        "SELECT e2llm_version();\n\
         SELECT e2llm_ask(doc_id, 'Who was the lighthouse keeper?', '{\"max_new_tokens\": 16}') FROM documents;\n\
         SELECT length(e2llm_embed('a question'));\n\
         SELECT e2llm_version();",
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].starts_with("e2llm ") && lines[0].contains("loaded: none"), "{stdout}");
    assert!(lines[1].contains("Ada Morrow"), "answer: {stdout}");
    assert_eq!(lines[2], "1536");
    assert!(lines[3].contains("encoder") && lines[3].contains("decoder"), "{stdout}");
}

#[test]
fn bad_calls_are_sql_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let db = harbour_database(dir.path());
    let cases = [
        ("SELECT e2llm_ask(NULL, 'q');", "doc_id is NULL"),
        ("SELECT e2llm_ask(42, 'q');", "doc_id must be TEXT"),
        ("SELECT e2llm_ask('harbour.txt', NULL);", "question is NULL"),
        ("SELECT e2llm_ask('harbour.txt');", "takes 2 or 3 arguments"),
        ("SELECT e2llm_ask('harbour.txt', 'q', '{bad json');", "not valid JSON"),
        ("SELECT e2llm_ask('harbour.txt', 'q', '{\"mode\":\"telepathy\"}');", "unknown mode"),
        ("SELECT e2llm_ask('harbour.txt', 'q', '{\"max_new_tokens\":-5}');", "non-negative integer"),
        ("SELECT e2llm_ask('harbour.txt', 'q', '{\"top_k\":0}');", "top_k must be at least 1"),
        ("SELECT e2llm_ask('nope', 'q');", "unknown document `nope`"),
        ("SELECT e2llm_embed(NULL);", "text is NULL"),
        ("SELECT e2llm_models('/nonexistent');", "make setup"),
    ];
    for (sql, expected) in cases {
        // Each bad call is followed by a good one: the host process survives and keeps working.
        let out = sqlite3(&db, &format!("{sql}\nSELECT 'alive', count(*) FROM documents;"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(stderr.contains(expected), "{sql}: expected `{expected}` in stderr: {stderr}");
        assert!(stdout.contains("alive|1"), "{sql}: the shell did not go on: {stdout}");
    }
}

/// A Python whose sqlite3 module can load extensions (Debian's can; some builds cannot).
fn python_with_extensions() -> String {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import sqlite3; sqlite3.connect(':memory:').enable_load_extension(True)"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return candidate.to_string();
        }
    }
    panic!("no Python with sqlite3 extension loading found (Debian's /usr/bin/python3 has it)");
}

#[test]
fn ask_from_python_loads_models_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = harbour_database(dir.path());
    let script = r#"
import json, sqlite3, sys, time
db = sqlite3.connect(sys.argv[1])
db.enable_load_extension(True)
db.load_extension(sys.argv[2])
other = sqlite3.connect(sys.argv[1])
other.enable_load_extension(True)
other.load_extension(sys.argv[2])
q = "SELECT e2llm_ask_json('harbour.txt', 'When did the harbour open?', '{\"max_new_tokens\": 24}')"
t0 = time.perf_counter(); first = json.loads(db.execute(q).fetchone()[0]); t1 = time.perf_counter()
shared = other.execute("SELECT e2llm_version()").fetchone()[0]
second = json.loads(other.execute(q).fetchone()[0]); t2 = time.perf_counter()
print(json.dumps({"first_ms": (t1 - t0) * 1e3, "second_ms": (t2 - t1) * 1e3,
                  "first": first["answer"], "second": second["answer"], "shared": shared,
                  "evidence": first["evidence"],
                  "first_load_ms": first["load_ms"], "second_load_ms": second["load_ms"],
                  "version": db.execute("SELECT e2llm_version()").fetchone()[0]}))
"#;
    let out = Command::new(python_with_extensions())
        .args(["-c", script, db.to_str().unwrap(), extension().to_str().unwrap()])
        .env("E2LLM_MODELS", common::models_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    eprintln!("first call {:.0} ms, second call (other connection) {:.0} ms", report["first_ms"], report["second_ms"]);
    assert!(report["first"].as_str().unwrap().contains("1887"), "{report}");
    assert_eq!(report["first"], report["second"]);
    // The answer comes with the sentence of the document that holds it, in the chunk retrieval read.
    assert_eq!(report["evidence"]["read"], true, "{report}");
    assert!(report["evidence"]["sentence"].as_str().unwrap().contains("opened in 1887"), "{report}");
    // The second connection finds the models the first one loaded, and pays no loading.
    assert!(report["shared"].as_str().unwrap().contains("loaded: encoder,decoder"), "{report}");
    assert!(report["first_load_ms"].as_f64().unwrap() > 0.0);
    assert!(report["second_load_ms"].as_f64().unwrap() < 50.0, "{report}");
    assert!(report["version"].as_str().unwrap().contains("decoder"));
}
