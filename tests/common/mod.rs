//! Shared test setup: the models directory written by `make setup`.
#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use e2llm::engine::{Engine, EngineOptions};

/// `E2LLM_MODELS`, else `models/default` in the project. Tests that need models fail (never skip)
/// with a pointer to `make setup` when it is absent.
pub fn models_dir() -> PathBuf {
    let dir = std::env::var_os("E2LLM_MODELS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models/default"));
    assert!(
        dir.join("manifest.json").is_file(),
        "models not found at {}: run `make setup` first (make test does)",
        dir.display()
    );
    dir
}

/// One engine per test binary on the float32 graphs: the reference the golden values were computed
/// for (the quantised variants that `auto` runs on the CPU are tested against it in precision.rs).
pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut options = EngineOptions::new(models_dir());
        options.threads = 2;
        options.precision = Some(e2llm::runtime::Precision::Fp32);
        Engine::new(options).expect("engine loads")
    })
}

pub fn golden() -> serde_json::Value {
    let text = std::fs::read_to_string(models_dir().join("golden.json")).expect("golden.json written by make setup");
    serde_json::from_str(&text).expect("golden.json parses")
}

pub fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/sotu")
}

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_e2llm")
}

/// The ONNX Runtime library e2llm finds (ORT_DYLIB_PATH, which make sets, else `models/runtime/`).
pub fn ort_library() -> PathBuf {
    e2llm::runtime::library_candidates(&models_dir())
        .into_iter()
        .find(|path| path.is_file())
        .expect("libonnxruntime.so not found: run `make setup` (or set ORT_DYLIB_PATH)")
}

/// The loadable extension (`make ext` builds it; `make test` does), as `.load` takes it.
pub fn extension() -> PathBuf {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/release/libe2llm.so");
    assert!(path.is_file(), "{} not built: run `make ext` (make test does)", path.display());
    path.with_extension("")
}

/// A small database (document `harbour.txt`, one chunk) compressed by the CLI into `dir/t.db`.
pub fn harbour_database(dir: &Path) -> PathBuf {
    let doc = dir.join("harbour.txt");
    std::fs::write(
        &doc,
        "The harbour of Kestrel Bay opened in 1887. Its lighthouse keeper was Ada Morrow. \
         The harbour closed in 1990 after the fishing fleet moved north.",
    )
    .unwrap();
    let db = dir.join("t.db");
    let out = Command::new(bin())
        .args(["compress", "--db", db.to_str().unwrap(), "harbour.txt"])
        .current_dir(dir)
        .env("E2LLM_MODELS", models_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    db
}

/// Runs `script` in the real `sqlite3` shell on `db` with the extension loaded and E2LLM_MODELS set.
pub fn sqlite3(db: &Path, script: &str) -> Output {
    sqlite3_with_env(db, script, &[])
}

/// [`sqlite3`] with environment variables set (`Some`, overriding E2LLM_MODELS) or removed (`None`).
/// A shell still running after five minutes is killed and fails the test: a hang is a failure, not
/// a stuck test run.
pub fn sqlite3_with_env(db: &Path, script: &str, env: &[(&str, Option<&OsStr>)]) -> Output {
    let mut command = Command::new("sqlite3");
    command.arg(db).env("E2LLM_MODELS", models_dir());
    for (key, value) in env {
        match value {
            Some(value) => command.env(key, value),
            None => command.env_remove(key),
        };
    }
    let mut child = command
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the sqlite3 shell is installed (make test installs it)");
    let script = format!(".load {}\n{script}\n", extension().display());
    let mut stdin = child.stdin.take().unwrap();
    // Written from a thread: a long script must not block while the shell's output fills its pipe.
    let writer = std::thread::spawn(move || stdin.write_all(script.as_bytes()));
    let output = output_within(child, Duration::from_secs(300));
    writer.join().unwrap().unwrap();
    output
}

/// The child's output, waiting at most `limit`; past it the child is killed and the test fails.
pub fn output_within(mut child: Child, limit: Duration) -> Output {
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut bytes);
            }
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("child process still running after {limit:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}
