//! SQL functions over the library (the loadable extension's body; `sqlite-ext/` holds the entry
//! point). Every function validates its arguments and returns SQLite errors, never panics; models
//! load once per process and are shared by every connection.
//!
//! - `e2llm_ask(doc_id, question [, options_json])` → TEXT answer
//! - `e2llm_ask_json(doc_id, question [, options_json])` → TEXT JSON (answer, timings, tokens)
//! - `e2llm_embed(text)` → BLOB (little-endian float32 × dim, the stored vector format)
//! - `e2llm_version()` → TEXT (version, models directory, what is loaded)
//! - `e2llm_models(dir)` → TEXT: use models from `dir` for this process (trusted SQL only)

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use rusqlite::functions::{Context, FunctionFlags};
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use crate::ask::AskOptions;
use crate::engine::{default_models_dir, Engine, EngineOptions};
use crate::error::Error;
use crate::runtime::Device;
use crate::store::Reader;
use crate::vector;

struct Shared {
    models_dir: Option<PathBuf>,
    engine: Option<Arc<Engine>>,
}

static SHARED: Mutex<Shared> = Mutex::new(Shared { models_dir: None, engine: None });

/// The process-wide engine, loaded on first use.
fn engine() -> Result<Arc<Engine>, Error> {
    let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(engine) = &shared.engine {
        return Ok(engine.clone());
    }
    let mut options = EngineOptions::new(shared.models_dir.clone().unwrap_or_else(default_models_dir));
    options.device = Device::from_env()?;
    let engine = Arc::new(Engine::new(options)?);
    shared.engine = Some(engine.clone());
    Ok(engine)
}

fn user_error(message: impl Into<String>) -> rusqlite::Error {
    rusqlite::Error::UserFunctionError(message.into().into())
}

/// Runs a SQL function's body so that no panic unwinds into the host process: a panic becomes an
/// SQL error naming the function (the host's statement fails, the host goes on).
fn guard<T>(function: &str, body: impl FnOnce() -> rusqlite::Result<T>) -> rusqlite::Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)).unwrap_or_else(|panic| {
        let reason = crate::error::panic_message(&*panic);
        Err(user_error(format!("{function}: internal error (please report): {reason}")))
    })
}

fn to_sql_error(e: Error) -> rusqlite::Error {
    user_error(e.to_string())
}

fn text_arg(ctx: &Context<'_>, index: usize, function: &str, name: &str) -> rusqlite::Result<String> {
    match ctx.get_raw(index) {
        ValueRef::Text(bytes) => std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| user_error(format!("{function}: {name} is not valid UTF-8"))),
        ValueRef::Null => Err(user_error(format!("{function}: {name} is NULL"))),
        other => Err(user_error(format!("{function}: {name} must be TEXT, got {:?}", other.data_type()))),
    }
}

/// Parses `{"mode": "...", "max_new_tokens": N, "top_k": K, "retrieval": "fused", "prefix_cache": true}`;
/// unknown keys are errors.
pub fn parse_options(json: Option<&str>) -> Result<AskOptions, Error> {
    let mut options = AskOptions::default();
    let Some(json) = json else { return Ok(options) };
    let value: serde_json::Value =
        serde_json::from_str(json).map_err(|e| Error::Invalid(format!("options are not valid JSON: {e}")))?;
    let object = value.as_object().ok_or_else(|| Error::Invalid("options must be a JSON object".into()))?;
    for (key, value) in object {
        let flag = |value: &serde_json::Value| {
            value.as_bool().ok_or_else(|| Error::Invalid(format!("option `{key}` must be true or false, got {value}")))
        };
        let count = |value: &serde_json::Value| {
            value
                .as_u64()
                .map(|v| v as usize)
                .ok_or_else(|| Error::Invalid(format!("option `{key}` must be a non-negative integer, got {value}")))
        };
        match key.as_str() {
            "mode" => {
                let mode = value.as_str().ok_or_else(|| Error::Invalid("option `mode` must be a string".into()))?;
                options.mode = mode.parse()?;
            }
            "max_new_tokens" => options.max_new_tokens = count(value)?,
            "top_k" => options.top_k = count(value)?,
            "max_soft_tokens" => options.max_soft_tokens = count(value)?,
            "memory_chunks" => options.memory_chunks = count(value)?,
            "retrieval" => {
                let retrieval =
                    value.as_str().ok_or_else(|| Error::Invalid("option `retrieval` must be a string".into()))?;
                options.retrieval = retrieval.parse()?;
            }
            "prefix_cache" => options.prefix_cache = flag(value)?,
            "multiline" => options.stop_at_newline = !flag(value)?,
            "extractive" => options.extractive = flag(value)?,
            "whole_numbers" => options.whole_numbers = flag(value)?,
            "whole_spans" => options.whole_spans = flag(value)?,
            "calibrate_yes_no" => options.calibrate_yes_no = flag(value)?,
            "avoid_repeating" => options.avoid_repeating = flag(value)?,
            "extractive_fallback" => options.extractive_fallback = flag(value)?,
            "second_hop" => options.second_hop = flag(value)?,
            "refocus" => options.refocus = flag(value)?,
            "gather" => options.gather = flag(value)?,
            "compare_years" => options.compare_years = flag(value)?,
            "min_relevance" => {
                options.min_relevance = value.as_f64().ok_or_else(|| {
                    Error::Invalid(format!("option `min_relevance` must be a number between 0 and 1, got {value}"))
                })?
            }
            other => {
                return Err(Error::Invalid(format!(
                    "unknown option `{other}` (known: mode, max_new_tokens, top_k, retrieval, max_soft_tokens, memory_chunks, prefix_cache, multiline, extractive, whole_numbers, whole_spans, calibrate_yes_no, avoid_repeating, extractive_fallback, min_relevance, second_hop, refocus, gather, compare_years)"
                )))
            }
        }
    }
    options.validate()?;
    Ok(options)
}

fn ask(ctx: &Context<'_>, function: &str) -> rusqlite::Result<crate::ask::Answer> {
    if !(2..=3).contains(&ctx.len()) {
        return Err(user_error(format!(
            "{function} takes 2 or 3 arguments (doc_id, question [, options_json]), got {}",
            ctx.len()
        )));
    }
    let doc_id = text_arg(ctx, 0, function, "doc_id")?;
    let question = text_arg(ctx, 1, function, "question")?;
    let options_json = if ctx.len() == 3 && !matches!(ctx.get_raw(2), ValueRef::Null) {
        Some(text_arg(ctx, 2, function, "options_json")?)
    } else {
        None
    };
    let options = parse_options(options_json.as_deref()).map_err(to_sql_error)?;
    let engine = engine().map_err(to_sql_error)?;
    // SAFETY: the connection handle is valid for the duration of this call; it is used only
    // for reads inside it.
    let conn = unsafe { ctx.get_connection()? };
    let label = conn.path().filter(|p| !p.is_empty()).unwrap_or("main").to_string();
    let reader = Reader::new(&conn, &label);
    reader.check_schema().map_err(to_sql_error)?;
    engine.ask(&reader, &doc_id, &question, &options).map_err(to_sql_error)
}

/// Registers the e2llm SQL functions on `conn`.
pub fn register(conn: &Connection) -> rusqlite::Result<()> {
    let flags = FunctionFlags::SQLITE_UTF8;
    conn.create_scalar_function("e2llm_ask", -1, flags, |ctx| {
        guard("e2llm_ask", || ask(ctx, "e2llm_ask").map(|a| a.answer))
    })?;
    conn.create_scalar_function("e2llm_ask_json", -1, flags, |ctx| {
        guard("e2llm_ask_json", || {
            ask(ctx, "e2llm_ask_json").map(|a| serde_json::to_string(&a).expect("answers serialise"))
        })
    })?;
    conn.create_scalar_function("e2llm_embed", 1, flags | FunctionFlags::SQLITE_DETERMINISTIC, |ctx| {
        guard("e2llm_embed", || {
            let text = text_arg(ctx, 0, "e2llm_embed", "text")?;
            let encoder = engine().and_then(|e| e.encoder()).map_err(to_sql_error)?;
            let vectors = encoder.embed(&[&text], 1).map_err(to_sql_error)?;
            Ok(Value::Blob(vector::to_blob(vectors.row(0))))
        })
    })?;
    conn.create_scalar_function("e2llm_version", 0, flags, |_ctx| {
        guard("e2llm_version", || {
            let shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
            let models = shared.models_dir.clone().unwrap_or_else(default_models_dir);
            let loaded = shared.engine.as_ref().map(|e| e.loaded().join(",")).unwrap_or_default();
            Ok(format!(
                "e2llm {} (models {}; loaded: {})",
                crate::VERSION,
                models.display(),
                if loaded.is_empty() { "none" } else { &loaded }
            ))
        })
    })?;
    conn.create_scalar_function("e2llm_models", 1, flags, |ctx| {
        guard("e2llm_models", || {
            let dir = PathBuf::from(text_arg(ctx, 0, "e2llm_models", "dir")?);
            crate::manifest::Manifest::load(&dir).map_err(to_sql_error)?;
            let mut shared = SHARED.lock().unwrap_or_else(|p| p.into_inner());
            if shared.engine.as_ref().is_some_and(|e| e.options().models_dir != dir) {
                // Sessions in flight keep their Arc; new calls load from the new directory.
                shared.engine = None;
            }
            shared.models_dir = Some(dir.clone());
            Ok(dir.display().to_string())
        })
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ask::Mode;

    #[test]
    fn a_panic_inside_a_function_becomes_an_sql_error() {
        let result: rusqlite::Result<()> = guard("e2llm_test", || panic!("boom"));
        let message = result.unwrap_err().to_string();
        assert!(message.contains("e2llm_test") && message.contains("boom"), "{message}");
        assert_eq!(guard("e2llm_test", || Ok(7)).unwrap(), 7);
    }

    proptest::proptest! {
        /// Any text as options: parsed or refused with an error, never a panic; accepted options are valid.
        #[test]
        fn options_never_panic(text in ".{0,80}") {
            if let Ok(options) = parse_options(Some(&text)) {
                proptest::prop_assert!(options.validate().is_ok());
            }
        }

        /// Any JSON object of known keys with arbitrary values: accepted only within the limits.
        #[test]
        fn options_within_limits(max in proptest::num::i64::ANY, top_k in proptest::num::i64::ANY, mode in "[a-z-]{0,14}") {
            let json = format!(r#"{{"mode":"{mode}","max_new_tokens":{max},"top_k":{top_k}}}"#);
            match parse_options(Some(&json)) {
                Ok(o) => {
                    proptest::prop_assert!(o.max_new_tokens <= crate::ask::MAX_NEW_TOKENS_LIMIT && o.top_k >= 1);
                    proptest::prop_assert_eq!(o.max_new_tokens as i64, max);
                }
                Err(e) => proptest::prop_assert!(!e.to_string().is_empty()),
            }
        }
    }

    #[test]
    fn options_parse_and_reject_bad_values() {
        let options = parse_options(Some(r#"{"mode":"hybrid","max_new_tokens":8,"top_k":2}"#)).unwrap();
        assert_eq!((options.mode, options.max_new_tokens, options.top_k), (Mode::Hybrid, 8, 2));
        assert_eq!(parse_options(None).unwrap().mode, Mode::Rag);
        assert!(parse_options(None).unwrap().stop_at_newline, "answers stop at the end of their line by default");
        assert!(!parse_options(Some(r#"{"multiline":true}"#)).unwrap().stop_at_newline);
        assert!(parse_options(None).unwrap().whole_numbers, "numbers are completed by default");
        assert!(!parse_options(Some(r#"{"whole_numbers":false}"#)).unwrap().whole_numbers);
        assert!(parse_options(None).unwrap().whole_spans && parse_options(None).unwrap().calibrate_yes_no);
        let off = parse_options(Some(r#"{"whole_spans":false,"calibrate_yes_no":false}"#)).unwrap();
        assert!(!off.whole_spans && !off.calibrate_yes_no);
        let default_repeating = AskOptions::default().avoid_repeating;
        assert_eq!(parse_options(None).unwrap().avoid_repeating, default_repeating);
        let flipped = format!(r#"{{"avoid_repeating":{}}}"#, !default_repeating);
        assert_eq!(parse_options(Some(&flipped)).unwrap().avoid_repeating, !default_repeating);
        assert!(parse_options(None).unwrap().extractive_fallback, "unquoted answers are copied by default");
        assert!(!parse_options(Some(r#"{"extractive_fallback":false}"#)).unwrap().extractive_fallback);
        let rcc = parse_options(Some(r#"{"mode":"rcc","memory_chunks":6}"#)).unwrap();
        assert_eq!((rcc.mode, rcc.memory_chunks), (Mode::Rcc, 6));
        assert_eq!(parse_options(Some(r#"{"min_relevance":0.5}"#)).unwrap().min_relevance, 0.5);
        for bad in [
            r#"{"min_relevance":"high"}"#,
            r#"{"min_relevance":2}"#,
            r#"{"min_relevance":-0.5}"#,
            r#"{"multiline":"yes"}"#,
            r#"{"extractive":true,"mode":"compressed"}"#,
            r#"{"prefix_cache":1}"#,
            r#"{"calibrate_yes_no":"no"}"#,
            r#"{"extractive_fallback":null}"#,
            "{",
            "[]",
            r#"{"mode":"telepathy"}"#,
            r#"{"mode":3}"#,
            r#"{"max_new_tokens":-1}"#,
            r#"{"max_new_tokens":1e9}"#,
            r#"{"max_new_tokens":100000}"#,
            r#"{"top_k":0}"#,
            r#"{"mode":"rcc","memory_chunks":0}"#,
            r#"{"mode":"rcc","memory_chunks":"all"}"#,
            r#"{"mode":"rcc","extractive":true}"#,
            r#"{"colour":"red"}"#,
        ] {
            assert!(parse_options(Some(bad)).is_err(), "accepted {bad}");
        }
    }
}
