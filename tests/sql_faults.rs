//! Faults met from SQL, through the real `sqlite3` shell: a missing ONNX Runtime library, missing or
//! corrupt model files, vectors of another encoder, and hostile questions. Each is an SQL error (or a
//! bounded answer) and the shell goes on to the next statement.

mod common;

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use common::{harbour_database, sqlite3, sqlite3_with_env};

/// The statement run after every failing one: the host survived and still reads the database.
const ALIVE: &str = "SELECT 'alive', count(*) FROM documents;";

/// A models directory `dir/models` of symlinks to the real model files, so one file can be replaced
/// by a broken real file (replacing the link, never its target). `dir` has no `runtime/` folder.
fn linked_models(dir: &Path) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir(&models).unwrap();
    for entry in std::fs::read_dir(common::models_dir()).unwrap() {
        let entry = entry.unwrap();
        std::os::unix::fs::symlink(std::fs::canonicalize(entry.path()).unwrap(), models.join(entry.file_name()))
            .unwrap();
    }
    models
}

/// Replaces the link `models/name` with a real file holding `bytes`.
fn replace_with(models: &Path, name: &str, bytes: &[u8]) {
    let link = models.join(name);
    assert!(link.symlink_metadata().unwrap().file_type().is_symlink(), "{name} is not one of our links");
    std::fs::remove_file(&link).unwrap();
    std::fs::write(&link, bytes).unwrap();
}

/// The first `len` bytes of the real model file `name`.
fn head_of(name: &str, len: usize) -> Vec<u8> {
    use std::io::Read;
    let mut bytes = vec![0; len];
    std::fs::File::open(common::models_dir().join(name)).unwrap().read_exact(&mut bytes).unwrap();
    bytes
}

/// Runs `sql` then [`ALIVE`]; asserts stderr has every `expected` text, no panic, and the shell went on.
fn assert_sql_error(db: &Path, sql: &str, env: &[(&str, Option<&OsStr>)], expected: &[&str]) {
    let out = sqlite3_with_env(db, &format!("{sql}\n{ALIVE}"), env);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    for text in expected {
        assert!(stderr.contains(text), "{sql}: expected `{text}` in the SQL error: {stderr}");
    }
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "{sql}: {stderr}");
    assert!(stdout.contains("alive|1"), "{sql}: the shell did not go on: {stdout} {stderr}");
}

#[test]
fn missing_onnx_runtime_library_is_an_sql_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = harbour_database(dir.path());
    let models = linked_models(dir.path());
    let not_a_library = dir.path().join("libonnxruntime.so");
    std::fs::write(&not_a_library, "not an ELF file").unwrap();
    let missing = Path::new("/nonexistent/libonnxruntime.so");
    let ask = "SELECT e2llm_ask('harbour.txt', 'When did the harbour open?');";
    let embed = "SELECT e2llm_embed('a question');";
    let models_env = ("E2LLM_MODELS", Some(models.as_os_str()));
    let looked_in = format!("{}/../runtime/", models.display());
    let cases: [(Option<&OsStr>, Vec<&str>); 3] = [
        // Set to a path that does not exist: that path is named, no other library is tried.
        (Some(missing.as_os_str()), vec!["ONNX Runtime library", "make setup", "/nonexistent/libonnxruntime.so"]),
        // Not set, and no runtime/ beside the models: where it looked is named.
        (None, vec!["ONNX Runtime library", "make setup", &looked_in]),
        // A file that is not a shared library.
        (Some(not_a_library.as_os_str()), vec!["ONNX Runtime library", "make setup", not_a_library.to_str().unwrap()]),
    ];
    for (library, expected) in &cases {
        for sql in [ask, embed] {
            assert_sql_error(&db, sql, &[models_env, ("ORT_DYLIB_PATH", *library)], expected);
        }
    }
}

#[test]
fn missing_or_corrupt_model_files_are_sql_errors() {
    let dir = tempfile::tempdir().unwrap();
    let db = harbour_database(dir.path());
    let real_decoder = std::fs::metadata(common::models_dir().join("decoder.onnx")).unwrap().len();
    let library = common::ort_library();
    let garbled = {
        let mut bytes = head_of("decoder.onnx", 1 << 16);
        for (i, byte) in bytes.iter_mut().enumerate().skip(64) {
            *byte ^= (i as u8).wrapping_mul(151) | 1;
        }
        bytes
    };
    let tokenizer = head_of("decoder_tokenizer.json", 4096);
    let rag = "SELECT e2llm_ask('harbour.txt', 'When did the harbour open?', '{\"max_new_tokens\": 2}');";
    let compressed =
        "SELECT e2llm_ask('harbour.txt', 'When did the harbour open?', '{\"mode\": \"compressed\", \"max_new_tokens\": 2}');";
    // (file, its broken contents or None to delete it, the call, what the error must say, the precision
    // that loads that file: auto runs the quantised decoder on the CPU, fp32 the float32 graph)
    type Case<'a> = (&'a str, Option<Vec<u8>>, &'a str, &'a str, &'a str);
    let cases: [Case; 5] = [
        ("decoder.onnx", Some(head_of("decoder.onnx", 1 << 16)), rag, "make setup", "fp32"),
        ("decoder.onnx", Some(garbled), rag, "make setup", "fp32"),
        (
            "decoder.quantized.onnx.data",
            Some(head_of("decoder.quantized.onnx.data", 1 << 16)),
            rag,
            "make setup",
            "auto",
        ),
        ("decoder_tokenizer.json", Some(tokenizer), rag, "tokenizer", "auto"),
        ("adapter.onnx", None, compressed, "absent", "auto"),
    ];
    for (i, (name, contents, sql, reason, precision)) in cases.iter().enumerate() {
        let case_dir = dir.path().join(format!("case{i}"));
        std::fs::create_dir(&case_dir).unwrap();
        let models = linked_models(&case_dir);
        match contents {
            Some(bytes) => replace_with(&models, name, bytes),
            None => std::fs::remove_file(models.join(name)).unwrap(),
        }
        // A broken weights side file is reported with the graph that refers to it.
        let broken = models.join(name.strip_suffix(".data").unwrap_or(name));
        let env = [
            ("E2LLM_MODELS", Some(models.as_os_str())),
            ("ORT_DYLIB_PATH", Some(library.as_os_str())),
            ("E2LLM_PRECISION", Some(std::ffi::OsStr::new(precision))),
        ];
        assert_sql_error(&db, sql, &env, &[broken.to_str().unwrap(), reason]);
    }
    let decoder = std::fs::metadata(common::models_dir().join("decoder.onnx")).unwrap().len();
    assert_eq!(decoder, real_decoder, "the real decoder.onnx was changed");
}

#[test]
fn vectors_of_another_encoder_are_refused_from_sql() {
    let dir = tempfile::tempdir().unwrap();
    let db = harbour_database(dir.path());
    let forge = "UPDATE models SET encoder_sha256 = 'an-encoder-this-process-did-not-load';";
    for mode in ["compressed", "hybrid", "rag"] {
        let sql = format!(
            "{forge}\nSELECT e2llm_ask('harbour.txt', 'When did it open?', '{{\"mode\": \"{mode}\", \"max_new_tokens\": 2}}');"
        );
        assert_sql_error(&db, &sql, &[], &["encoder an-encoder-this-process-did-not-load", "cannot be mixed"]);
    }
}

/// A 300 KB question, 31,000 control characters and an empty question: each is answered within the
/// decoder's window (the question is cut) or refused, and the shell goes on.
#[test]
fn huge_control_character_and_empty_questions_are_bounded() {
    let dir = tempfile::tempdir().unwrap();
    let db = harbour_database(dir.path());
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(common::models_dir().join("manifest.json")).unwrap()).unwrap();
    let window = manifest["decoder"]["context_length"].as_u64().unwrap();
    let controls = (1..=31).map(|c| c.to_string()).collect::<Vec<_>>().join(",");
    let questions = [
        ("huge", "replace(hex(zeroblob(11200)), '00', 'When did the harbour open? ')".to_string()),
        ("controls", format!("replace(hex(zeroblob(1000)), '00', char({controls}))")),
        ("empty", "''".to_string()),
    ];
    let mut script = String::new();
    for mode in ["rag", "compressed"] {
        for (name, question) in &questions {
            script.push_str(&format!(
                "SELECT '{name}', length(q), e2llm_ask_json('harbour.txt', q, '{{\"mode\": \"{mode}\", \"max_new_tokens\": 2}}') \
                 FROM (SELECT {question} AS q);\n"
            ));
        }
    }
    let started = std::time::Instant::now();
    let out = sqlite3(&db, &format!("{script}{ALIVE}"));
    let seconds = started.elapsed().as_secs_f64();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stdout.ends_with("alive|1\n"), "the shell did not go on: {stdout} {stderr}");
    assert!(!stderr.contains("panicked") && !stderr.contains("internal error"), "{stderr}");
    let answers: Vec<&str> = stdout.lines().filter(|l| !l.starts_with("alive|")).collect();
    let errors = stderr.lines().filter(|l| l.contains("e2llm_ask_json")).count();
    assert_eq!(answers.len() + errors, 6, "each question is answered or refused: {stdout} {stderr}");
    for line in &answers {
        let mut fields = line.splitn(3, '|');
        let (name, length, json) = (fields.next().unwrap(), fields.next().unwrap(), fields.next().unwrap());
        let answer: serde_json::Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {line}"));
        let prompt_tokens = answer["prompt_tokens"].as_u64().unwrap();
        eprintln!(
            "{name} ({length} chars, {}): {prompt_tokens} prompt tokens, {:.0} ms",
            answer["mode"], answer["total_ms"]
        );
        assert!(prompt_tokens <= window, "{name}: {prompt_tokens} prompt tokens exceed the {window}-token window");
        assert!(answer["generated_tokens"].as_u64().unwrap() <= 2, "{line}");
    }
    assert_eq!(answers.iter().filter(|l| l.starts_with("huge|302400|")).count(), 2, "{stdout}");
    // Generous for a loaded 2-core machine; a question whose cost grew with its length would take far longer.
    assert!(seconds < 120.0, "six bounded questions took {seconds:.0} s");
}
