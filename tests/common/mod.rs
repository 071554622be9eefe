//! Shared test setup: the models directory written by `make setup`.
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

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

pub fn engine() -> &'static Engine {
    static ENGINE: OnceLock<Engine> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut options = EngineOptions::new(models_dir());
        options.threads = 2;
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
