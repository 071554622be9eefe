//! One error type for the crate. Every variant carries the context a user needs to act:
//! which file, which document, which model, and what to do next.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("models directory {path} not found: run `make setup` (or pass --models / set E2LLM_MODELS)")]
    ModelsMissing { path: PathBuf },

    #[error(
        "model file {path} is missing or unreadable ({source}): re-run `make setup` to rebuild the models directory"
    )]
    ModelFile {
        path: PathBuf,
        #[source]
        source: BoxError,
    },

    #[error("models manifest {path} is invalid: {source}")]
    Manifest {
        path: PathBuf,
        #[source]
        source: BoxError,
    },

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

    #[error("ONNX Runtime failed in {model}: {source}")]
    Inference {
        model: String,
        #[source]
        source: BoxError,
    },

    #[error("tokenizer {what}: {source}")]
    Tokenizer {
        what: String,
        #[source]
        source: BoxError,
    },

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

    #[error("database {path}: {source}")]
    Database {
        path: String,
        #[source]
        source: BoxError,
    },

    #[error("database {path} is read-only ({source}): writing (compress, import) needs write access to the file and to its directory, where SQLite keeps the -wal and -shm files; ask, eval, export and info work on read-only databases")]
    ReadOnly {
        path: String,
        #[source]
        source: BoxError,
    },

    #[error("database {path} was built with encoder {stored} but the loaded encoder is {loaded}: vectors of different encoders cannot be mixed (use the models it was built with, or a new database)")]
    EncoderMismatch { path: String, stored: String, loaded: String },

    #[error("input {path}: {source}")]
    Input {
        path: String,
        #[source]
        source: BoxError,
    },

    #[error("invalid argument: {0}")]
    Invalid(String),

    #[error("vector BLOB has {len} bytes, expected {expected} (4 x dim {dim}, little-endian float32)")]
    VectorLength { len: usize, expected: usize, dim: usize },

    #[error("parquet {path}: {source}")]
    Parquet {
        path: String,
        #[source]
        source: BoxError,
    },

    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The underlying error a variant reports (its `source()`): the library's own error (SQLite's,
/// ONNX Runtime's, an I/O error), or a message where there is none (`String` and `&str` convert).
/// Its text is the variant's reason, as shown to users.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Constructors for the variants that carry a [`BoxError`]: `err` is the underlying error or a message.
impl Error {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io { context: context.into(), source }
    }

    pub fn db(path: impl Into<String>, err: impl Into<BoxError>) -> Self {
        Error::Database { path: path.into(), source: err.into() }
    }

    pub fn read_only(path: impl Into<String>, err: impl Into<BoxError>) -> Self {
        Error::ReadOnly { path: path.into(), source: err.into() }
    }

    pub fn inference(model: impl Into<String>, err: impl Into<BoxError>) -> Self {
        Error::Inference { model: model.into(), source: err.into() }
    }

    pub fn tokenizer(what: impl Into<String>, err: impl Into<BoxError>) -> Self {
        Error::Tokenizer { what: what.into(), source: err.into() }
    }

    pub fn model_file(path: impl Into<PathBuf>, err: impl Into<BoxError>) -> Self {
        Error::ModelFile { path: path.into(), source: err.into() }
    }

    pub fn manifest(path: impl Into<PathBuf>, err: impl Into<BoxError>) -> Self {
        Error::Manifest { path: path.into(), source: err.into() }
    }

    pub fn input(path: impl Into<String>, err: impl Into<BoxError>) -> Self {
        Error::Input { path: path.into(), source: err.into() }
    }

    pub fn parquet(path: impl Into<String>, err: impl Into<BoxError>) -> Self {
        Error::Parquet { path: path.into(), source: err.into() }
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
/// `ask/options.rs` and `runtime.rs` check every variant). The error lists the names.
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

#[cfg(test)]
mod tests {
    use std::error::Error as _;

    use super::*;

    #[test]
    fn a_database_error_keeps_sqlites_error_as_its_source() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let sqlite = conn.query_row("SELECT 1 WHERE 0", [], |r| r.get::<_, i64>(0)).unwrap_err();
        let text = sqlite.to_string();
        let err = Error::db("LABEL", sqlite);
        assert_eq!(err.to_string(), format!("database LABEL: {text}"));
        let source = err.source().expect("the database error has a source");
        assert!(
            matches!(source.downcast_ref::<rusqlite::Error>(), Some(rusqlite::Error::QueryReturnedNoRows)),
            "{source:?}"
        );
    }

    #[test]
    fn a_message_is_the_source_where_there_is_no_underlying_error() {
        let err = Error::db("LABEL", "no documents");
        assert_eq!(err.to_string(), "database LABEL: no documents");
        assert_eq!(err.source().unwrap().to_string(), "no documents");
        assert_eq!(
            Error::inference("adapter", format!("shape {}", 3)).to_string(),
            "ONNX Runtime failed in adapter: shape 3"
        );
    }

    #[test]
    fn io_errors_stay_the_source_of_file_errors() {
        let missing = || std::io::Error::new(std::io::ErrorKind::NotFound, "gone");
        for err in [
            Error::model_file("/m/decoder.onnx", missing()),
            Error::input("questions.jsonl", missing()),
            Error::parquet("out.parquet", missing()),
        ] {
            let source = err.source().unwrap().downcast_ref::<std::io::Error>().expect("the io error");
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound, "{err}");
        }
    }

    /// The texts users see, word for word as they were when these variants held a `String` reason.
    #[test]
    fn messages_read_as_before() {
        let cases = [
            (
                Error::model_file("/m/decoder.onnx", "file not found"),
                "model file /m/decoder.onnx is missing or unreadable (file not found): re-run `make setup` to rebuild \
                 the models directory",
            ),
            (
                Error::manifest("/m/manifest.json", "`files` lacks x"),
                "models manifest /m/manifest.json is invalid: `files` lacks x",
            ),
            (Error::inference("decoder", "boom"), "ONNX Runtime failed in decoder: boom"),
            (Error::tokenizer("encoder", "has no [CLS] token"), "tokenizer encoder: has no [CLS] token"),
            (Error::db("a.db", "no documents"), "database a.db: no documents"),
            (
                Error::read_only("a.db", "attempt to write a readonly database"),
                "database a.db is read-only (attempt to write a readonly database): writing (compress, import) needs \
                 write access to the file and to its directory, where SQLite keeps the -wal and -shm files; ask, eval, \
                 export and info work on read-only databases",
            ),
            (Error::input("q.jsonl:3", "expected x"), "input q.jsonl:3: expected x"),
            (Error::parquet("out.parquet", "missing column `seq`"), "parquet out.parquet: missing column `seq`"),
        ];
        for (err, expected) in cases {
            assert_eq!(err.to_string(), expected);
        }
    }
}
