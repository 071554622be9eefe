//! e2llm: compress long documents into chunk vectors stored in SQLite, and answer questions over
//! them with a small decoder LLM reading one soft token per chunk (E2LLM), retrieved raw chunks,
//! or both. The CLI (`src/main.rs`) and the SQLite extension are thin layers over this library.

pub mod adapt;
pub mod ask;
pub mod chunk;
pub mod compress;
pub mod decode;
pub mod encode;
pub mod engine;
pub mod error;
pub mod eval;
pub mod export;
pub mod ingest;
pub mod lexical;
pub mod manifest;
pub mod rcc;
pub mod runtime;
pub mod sql;
pub mod store;
pub mod vector;

pub use ask::{Answer, AskOptions, Mode, Retrieval};
pub use engine::{Engine, EngineOptions};
pub use error::{Error, Result};

pub const VERSION: &str = env!("CARGO_PKG_VERSION");
