//! One error type for the crate. Every variant carries the context a user needs to act:
//! which file, which document, which model, and what to do next.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("models directory {path} not found: run `make setup` (or pass --models / set E2LLM_MODELS)")]
    ModelsMissing { path: PathBuf },

    #[error(
        "model file {path} is missing or unreadable ({reason}): re-run `make setup` to rebuild the models directory"
    )]
    ModelFile { path: PathBuf, reason: String },

    #[error("models manifest {path} is invalid: {reason}")]
    Manifest { path: PathBuf, reason: String },

    #[error("ONNX Runtime library not found or not loadable ({reason}): run `make setup`, or set ORT_DYLIB_PATH to libonnxruntime.so")]
    Runtime { reason: String },

    #[error("CUDA execution provider unavailable: {reason}")]
    Cuda { reason: String },

    #[error("precision {precision} (--precision or E2LLM_PRECISION): {dir} has no {precision} variant of the {model} ({file}); build it with `{build}` ({hint}), or use --precision fp32 or auto", dir = dir.display(), file = file.display())]
    VariantMissing {
        model: &'static str,
        precision: crate::runtime::Precision,
        file: PathBuf,
        dir: PathBuf,
        build: String,
        hint: &'static str,
    },

    #[error("ONNX Runtime failed in {model}: {reason}")]
    Inference { model: String, reason: String },

    #[error("tokenizer {what}: {reason}")]
    Tokenizer { what: String, reason: String },

    #[error(
        "mode `{mode}` needs the trained adapter (adapter.onnx), which this models directory does not have: {hint}"
    )]
    AdapterMissing { mode: String, hint: String },

    #[error("mode `rcc` needs the RCC encoder (rcc_encoder.onnx), which this models directory does not have: {hint}")]
    RccMissing { hint: String },

    #[error("document `{doc_id}` in {db} has no RCC memory{detail}: compress it with `e2llm compress --rcc` (with the models you ask with)")]
    MemoryMissing { doc_id: String, db: String, detail: String },

    #[error("adapter does not match the loaded models: {reason}")]
    AdapterMismatch { reason: String },

    #[error("unknown document `{doc_id}` in {db}: list documents with `e2llm info --db {db} --docs`")]
    UnknownDoc { doc_id: String, db: String },

    #[error("database {path}: {reason}")]
    Database { path: String, reason: String },

    #[error("database {path} is read-only ({reason}): writing (compress, import) needs write access to the file and to its directory, where SQLite keeps the -wal and -shm files; ask, eval, export and info work on read-only databases")]
    ReadOnly { path: String, reason: String },

    #[error("database {path} was built with encoder {stored} but the loaded encoder is {loaded}: vectors of different encoders cannot be mixed (use the models it was built with, or a new database)")]
    EncoderMismatch { path: String, stored: String, loaded: String },

    #[error("input {path}: {reason}")]
    Input { path: String, reason: String },

    #[error("invalid argument: {0}")]
    Invalid(String),

    #[error("vector BLOB has {len} bytes, expected {expected} (4 x dim {dim}, little-endian float32)")]
    VectorLength { len: usize, expected: usize, dim: usize },

    #[error("parquet {path}: {reason}")]
    Parquet { path: String, reason: String },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub fn db(path: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Database { path: path.into(), reason: err.to_string() }
    }

    pub fn inference(model: impl Into<String>, err: impl std::fmt::Display) -> Self {
        Error::Inference { model: model.into(), reason: err.to_string() }
    }
}

/// The text of a caught panic (its `&str` or `String` payload), for the errors that replace panics.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// Parses a value (`question-only`, `cuda`, `fp16`; case-insensitive, clap's aliases too) from one
/// list of names: clap's, which serde's `rename_all` and [`value_name`] agree with (unit tests in
/// `ask.rs` and `runtime.rs` check every variant). The error lists the names.
pub fn parse_value<T: clap::ValueEnum>(what: &str, value: &str) -> Result<T> {
    T::from_str(value.trim(), true).map_err(|_| {
        let names: Vec<String> = T::value_variants()
            .iter()
            .filter_map(|v| v.to_possible_value())
            .map(|p| p.get_name().to_string())
            .collect();
        Error::Invalid(format!("unknown {what} `{value}` (expected one of {})", names.join(", ")))
    })
}

/// The name of a value in [`parse_value`]'s list.
pub fn value_name<T: clap::ValueEnum>(value: &T) -> String {
    value.to_possible_value().expect("every variant has a name").get_name().to_string()
}
