//! End to end through the `e2llm` binary: compress the example corpus, answer from it, and the
//! errors a user meets first.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use e2llm::decode::words;

fn e2llm(args: &[&str]) -> Output {
    Command::new(common::bin()).args(args).env("E2LLM_MODELS", common::models_dir()).output().expect("e2llm runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn json(output: &Output) -> serde_json::Value {
    assert!(output.status.success(), "failed: {}", stderr(output));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {}", stdout(output)))
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn compress_the_corpus_then_answer_from_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("sotu.db");
    let corpus = common::examples_dir();
    let summary = json(&e2llm(&["compress", "--db", path(&db), path(&corpus), "--json", "--threads", "2"]));
    let files = std::fs::read_dir(&corpus).unwrap().count() as u64;
    assert_eq!(summary["added"], files);
    assert_eq!(summary["failed"], 0);
    assert!(summary["chunks"].as_u64().unwrap() > 400);

    // A second run finds nothing changed.
    let again = json(&e2llm(&["compress", "--db", path(&db), path(&corpus), "--json"]));
    assert_eq!(again["unchanged"], files);
    assert_eq!(again["added"], 0);

    let info = json(&e2llm(&["info", "--db", path(&db), "--docs", "--json"]));
    assert_eq!(info["database"]["documents"], files);
    assert!(info["documents"].as_array().unwrap().iter().any(|d| d == "1941-Roosevelt-1.txt"));

    // A factual question answered from retrieved chunks. The decoder words the answer otherwise than the
    // text ("the Congress of the Seventy-seventh Congress"), but one sentence it read holds all the
    // answer's words: that sentence is its evidence, and the answer is not read again.
    let ask_rag = |doc: &str, extra: &[&str], question: &str| {
        let args = ["ask", "--db", path(&db), "--doc", doc, "--mode", "rag", "--json"];
        json(&e2llm(&[&args[..], extra, &[question]].concat()))
    };
    let answer = ask_rag("1941-Roosevelt-1.txt", &[], "Which Congress is Roosevelt addressing?");
    let text = answer["answer"].as_str().unwrap().to_lowercase();
    assert!(text.contains("seventy-seventh"), "rag answer: {text}");
    assert_eq!(answer["second_hop"], false, "{answer}");
    assert_eq!(answer["evidence"]["read"], true, "{answer}");
    assert!(answer["evidence"]["sentence"].as_str().unwrap().contains("Seventy-seventh Congress"), "{answer}");
    // An answer the text read does not support is read again from a second hop, from other chunks.
    let kennedy =
        |extra: &[&str]| ask_rag("1961-Kennedy-1.txt", extra, "What did Kennedy say about the space program?");
    let (first, second) = (kennedy(&["--one-hop"]), kennedy(&[]));
    assert_eq!(first["second_hop"], false, "{first}");
    assert_eq!(second["second_hop"], true, "a weak answer is read again: {second}");
    assert_ne!(second["chunks"], first["chunks"], "from other chunks: {second}");
    for field in ["answer", "mode", "prompt_tokens", "ttft_ms", "total_ms"] {
        assert!(!answer[field].is_null(), "missing {field}");
    }
    assert_eq!(answer["mode"], "rag");
    assert!(answer["ttft_ms"].as_f64().unwrap() <= answer["total_ms"].as_f64().unwrap());

    assert!(answer.get("replaced_answer").is_some(), "the JSON always says whether the answer was copied: {answer}");

    // With --evidence, a second line: the sentence that holds the answer's words, or that none does;
    // a third where the extractive fallback copied the answer, naming the decoder's own one.
    let args = ["ask", "--db", path(&db), "--doc", "1941-Roosevelt-1.txt", "--mode", "rag", "--evidence"];
    let plain = stdout(&e2llm(&[&args[..], &["What is the first of the four essential human freedoms?"]].concat()));
    let lines: Vec<&str> = plain.lines().collect();
    assert!(lines.len() == 2 || lines.len() == 3, "{plain}");
    match lines[1].strip_prefix("  evidence (chunk ") {
        Some(rest) => assert!(words(rest).contains(&words(lines[0])), "{plain}"),
        None => assert!(lines[1].starts_with("  no evidence") && lines.len() == 2, "{plain}"),
    }
    if let Some(copied) = lines.get(2) {
        assert!(copied.starts_with("  copied from the text: the decoder's own answer, "), "{plain}");
    }

    // Full mode reads the (cut) document; question-only reads none.
    let ask = |mode: &str| {
        let args = ["ask", "--db", path(&db), "--doc", "1790-Washington-1.txt", "--mode", mode, "--json"];
        json(&e2llm(&[&args[..], &["--max-new-tokens", "8", "Who is speaking?"]].concat()))
    };
    let (full, bare) = (ask("full"), ask("question-only"));
    assert!(full["prompt_tokens"].as_u64().unwrap() > 1000);
    assert!(bare["prompt_tokens"].as_u64().unwrap() < 100);
    assert!(bare["evidence"].is_null(), "question-only reads no document: {bare}");

    // Unknown documents are named, with the way to list the real ones.
    let unknown = e2llm(&["ask", "--db", path(&db), "--doc", "no-such-doc", "Anything?"]);
    assert!(!unknown.status.success());
    assert!(
        stderr(&unknown).contains("unknown document `no-such-doc`") && stderr(&unknown).contains("--docs"),
        "{}",
        stderr(&unknown)
    );
}

#[test]
fn compressed_mode_without_adapter_says_what_is_missing() {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::models_dir().join("manifest.json")).unwrap()).unwrap();
    if !manifest["adapter"].is_null() {
        return; // An adapter is installed: the adapter tests cover this mode.
    }
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let doc = dir.path().join("doc.txt");
    std::fs::write(&doc, "The harbour opened in 1887. It closed in 1990.").unwrap();
    assert!(e2llm(&["compress", "--db", path(&db), path(&doc)]).status.success());
    for mode in ["compressed", "hybrid"] {
        let out = e2llm(&["ask", "--db", path(&db), "--doc", path(&doc), "--mode", mode, "When did it open?"]);
        assert!(!out.status.success());
        assert!(stderr(&out).contains("needs the trained adapter"), "{}", stderr(&out));
    }
}

#[test]
fn bad_inputs_are_reported_and_the_batch_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let inputs = dir.path().join("in");
    std::fs::create_dir(&inputs).unwrap();
    std::fs::write(inputs.join("good.txt"), "A good document about lighthouses and their keepers.").unwrap();
    std::fs::write(inputs.join("latin1.txt"), b"caf\xe9 au lait").unwrap();
    std::fs::write(inputs.join("empty.md"), "  \n\n ").unwrap();
    std::os::unix::fs::symlink(dir.path().join("gone.txt"), inputs.join("dangling.txt")).unwrap();
    std::fs::write(
        inputs.join("records.jsonl"),
        "{\"id\": \"r1\", \"text\": \"Record one is fine.\"}\nnot json\n{\"id\": 7}\n",
    )
    .unwrap();
    let db = dir.path().join("t.db");
    let out = e2llm(&["compress", "--db", path(&db), path(&inputs), "--json"]);
    assert_eq!(out.status.code(), Some(1), "some documents failed: exit 1");
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(summary["added"], 2, "{summary}");
    assert_eq!(summary["failed"], 5, "{summary}");
    let reasons = summary["failures"].to_string();
    for expected in ["not valid UTF-8", "empty text", "cannot read", "invalid JSON", "missing `text`"] {
        assert!(reasons.contains(expected), "no `{expected}` in {reasons}");
    }
    let info = json(&e2llm(&["info", "--db", path(&db), "--docs", "--json"]));
    assert_eq!(info["documents"], serde_json::json!(["good.txt", "r1"]));
}

#[test]
fn missing_models_directory_names_the_setup_command() {
    let out = Command::new(common::bin()).args(["info", "--models", "/nonexistent/models"]).output().unwrap();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("make setup"), "{}", stderr(&out));
}

#[test]
fn corrupt_database_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bad.db");
    std::fs::write(&db, "this is not a database at all, just text padding".repeat(200)).unwrap();
    let out = e2llm(&["ask", "--db", path(&db), "--doc", "x", "Anything?"]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("not an SQLite database or is corrupt"), "{}", stderr(&out));
}

/// Whether this run can use CUDA: an NVIDIA device and the GPU build of ONNX Runtime (`make ... GPU=1`).
fn cuda_usable() -> bool {
    std::path::Path::new("/dev/nvidiactl").exists()
        && std::env::var("ORT_DYLIB_PATH").is_ok_and(|p| p.contains("runtime-gpu"))
}

/// On a machine without a GPU (CI) or with the CPU build of ONNX Runtime, `--device cuda` must fail
/// and say that CUDA is what is missing — never fall back to CPU silently.
#[test]
fn device_cuda_without_gpu_fails_naming_cuda() {
    if cuda_usable() {
        assert!(e2llm(&["embed", "--device", "cuda", "hello"]).status.success());
        return;
    }
    for args in [&["embed", "--device", "cuda", "hello"][..], &["info", "--device", "cuda"][..]] {
        let out = e2llm(args);
        assert!(!out.status.success(), "{args:?} succeeded without a GPU: {}", stdout(&out));
        let err = stderr(&out);
        assert!(err.contains("CUDA"), "{args:?}: error does not name CUDA: {err}");
        assert!(!err.contains("panicked"), "{args:?}: {err}");
    }
    // The environment variable behaves the same as the flag.
    let out = Command::new(common::bin())
        .args(["embed", "hello"])
        .env("E2LLM_MODELS", common::models_dir())
        .env("E2LLM_DEVICE", "cuda")
        .output()
        .unwrap();
    assert!(!out.status.success() && stderr(&out).contains("CUDA"), "{}", stderr(&out));
}

/// `--device auto` on a machine without a GPU runs on CPU and says so.
#[test]
fn device_auto_reports_the_provider_it_used() {
    let info = json(&e2llm(&["info", "--device", "auto", "--json"]));
    assert_eq!(info["device"], "auto");
    let provider = info["provider"].as_str().unwrap();
    if cuda_usable() {
        assert_eq!(provider, "CUDAExecutionProvider");
    } else {
        assert_eq!(provider, "CPUExecutionProvider");
    }
}

/// Chunk vectors damaged in the database (a wrong-length BLOB, a NaN) are named with their document
/// and chunk by every mode that reads them, as an error, never a panic or a silent wrong answer.
#[test]
fn corrupt_stored_vectors_are_named() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("short.txt"), "The harbour opened in 1887.").unwrap();
    std::fs::write(dir.path().join("nan.txt"), "The lighthouse keeper was Ada Morrow.").unwrap();
    let db = dir.path().join("t.db");
    let out = Command::new(common::bin())
        .args(["compress", "--db", "t.db", "short.txt", "nan.txt"])
        .current_dir(dir.path())
        .env("E2LLM_MODELS", common::models_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("UPDATE chunks SET vector = zeroblob(100) WHERE doc_id = 'short.txt'", []).unwrap();
    let dim: usize = conn.query_row("SELECT dim FROM models", [], |r| r.get::<_, i64>(0)).unwrap() as usize;
    let mut vector = vec![0.05f32; dim];
    vector[7] = f32::NAN;
    conn.execute("UPDATE chunks SET vector = ?1 WHERE doc_id = 'nan.txt'", [e2llm::vector::to_blob(&vector)]).unwrap();
    drop(conn);
    let cases = [("short.txt", "vector BLOB has 100 bytes"), ("nan.txt", "vector component 7 is NaN")];
    for (doc, problem) in cases {
        for mode in ["hybrid", "compressed"] {
            let out =
                e2llm(&["ask", "--db", path(&db), "--doc", doc, "--mode", mode, "--max-new-tokens", "2", "When?"]);
            let err = stderr(&out);
            assert!(!out.status.success(), "{doc} {mode}: answered from a corrupt vector: {}", stdout(&out));
            assert!(err.contains(&format!("document `{doc}` chunk 0")) && err.contains(problem), "{doc} {mode}: {err}");
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}
