//! Inputs of `e2llm compress`: text/markdown files, directories (recursive), JSONL
//! (`{"id": ..., "text": ...}` per line) and Parquet (columns `id`, `text`). A bad record or an
//! unreadable file becomes a failed document, never the end of the batch.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use arrow::array::{Array, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::error::{Error, Result};

/// File extensions read as plain text when found in a directory.
pub const TEXT_EXTENSIONS: &[&str] = &["txt", "text", "md", "markdown", "rst"];

/// Where one document comes from. Text files are read lazily (one at a time, in the batch).
#[derive(Debug, Clone)]
pub enum Source {
    File {
        doc_id: String,
        path: PathBuf,
    },
    Record {
        doc_id: String,
        source: String,
        text: String,
    },
    /// An input that could not be read or parsed; reported as a failed document.
    Failed {
        doc_id: String,
        reason: String,
    },
}

impl Source {
    pub fn doc_id(&self) -> &str {
        match self {
            Source::File { doc_id, .. } | Source::Record { doc_id, .. } | Source::Failed { doc_id, .. } => doc_id,
        }
    }

    /// Reads the text: UTF-8, not empty.
    pub fn read(self) -> std::result::Result<(String, String, String), (String, String)> {
        match self {
            Source::File { doc_id, path } => {
                let source = path.display().to_string();
                let bytes = match std::fs::read(&path) {
                    Ok(bytes) => bytes,
                    Err(e) => return Err((doc_id, format!("cannot read {source}: {e}"))),
                };
                match String::from_utf8(bytes) {
                    Ok(text) => check_text(doc_id, source, text),
                    Err(e) => {
                        Err((doc_id, format!("{source} is not valid UTF-8 (at byte {})", e.utf8_error().valid_up_to())))
                    }
                }
            }
            Source::Record { doc_id, source, text } => check_text(doc_id, source, text),
            Source::Failed { doc_id, reason } => Err((doc_id, reason)),
        }
    }
}

fn check_text(
    doc_id: String,
    source: String,
    text: String,
) -> std::result::Result<(String, String, String), (String, String)> {
    if text.trim().is_empty() {
        return Err((doc_id, format!("{source}: empty text")));
    }
    Ok((doc_id, source, text))
}

/// Expands inputs into document sources, in a stable order.
pub fn sources(inputs: &[PathBuf]) -> Result<Vec<Source>> {
    let mut out = Vec::new();
    for input in inputs {
        if input.is_dir() {
            let mut files = Vec::new();
            walk(input, &mut files).map_err(|e| Error::io(format!("listing {}", input.display()), e))?;
            files.sort();
            for file in files {
                let relative = file.strip_prefix(input).unwrap_or(&file).to_string_lossy().into_owned();
                add_file(&file, relative, &mut out);
            }
        } else if input.exists() {
            let doc_id = input.to_string_lossy().trim_start_matches("./").to_string();
            add_file(input, doc_id, &mut out);
        } else {
            let name = input.display().to_string();
            out.push(Source::Failed { doc_id: name.clone(), reason: format!("{name}: no such file or directory") });
        }
    }
    Ok(out)
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            walk(&path, files)?;
        } else if extension(&path)
            .is_some_and(|e| TEXT_EXTENSIONS.contains(&e.as_str()) || e == "jsonl" || e == "parquet")
        {
            files.push(path);
        }
    }
    Ok(())
}

fn extension(path: &Path) -> Option<String> {
    path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase)
}

fn add_file(path: &Path, doc_id: String, out: &mut Vec<Source>) {
    match extension(path).as_deref() {
        Some("jsonl") => read_jsonl(path, out),
        Some("parquet") => {
            if let Err(reason) = read_parquet(path, out) {
                out.push(Source::Failed { doc_id, reason });
            }
        }
        _ => out.push(Source::File { doc_id, path: path.to_path_buf() }),
    }
}

fn read_jsonl(path: &Path, out: &mut Vec<Source>) {
    let name = path.display().to_string();
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) => return out.push(Source::Failed { doc_id: name.clone(), reason: format!("cannot read {name}: {e}") }),
    };
    for (index, line) in BufReader::new(file).split(b'\n').enumerate() {
        let line_no = index + 1;
        let here = format!("{name}:{line_no}");
        let bytes = match line {
            Ok(bytes) => bytes,
            Err(e) => {
                return out.push(Source::Failed { doc_id: here.clone(), reason: format!("cannot read {here}: {e}") })
            }
        };
        if bytes.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        match parse_record(&bytes) {
            Ok((doc_id, text)) => out.push(Source::Record { doc_id, source: here, text }),
            Err(reason) => out.push(Source::Failed { doc_id: here.clone(), reason: format!("{here}: {reason}") }),
        }
    }
}

/// One JSONL record: `id` (string or integer) and `text` (string).
pub fn parse_record(bytes: &[u8]) -> std::result::Result<(String, String), String> {
    let value: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let id = match value.get("id") {
        Some(serde_json::Value::String(s)) if !s.is_empty() => s.clone(),
        Some(serde_json::Value::Number(n)) => n.to_string(),
        Some(_) => return Err("`id` must be a non-empty string or a number".into()),
        None => return Err("missing `id`".into()),
    };
    match value.get("text") {
        Some(serde_json::Value::String(text)) => Ok((id, text.clone())),
        Some(_) => Err(format!("record `{id}`: `text` must be a string")),
        None => Err(format!("record `{id}`: missing `text`")),
    }
}

fn read_parquet(path: &Path, out: &mut Vec<Source>) -> std::result::Result<(), String> {
    let name = path.display().to_string();
    let file = File::open(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .map_err(|e| format!("{name} is not a readable Parquet file: {e}"))?
        .build()
        .map_err(|e| format!("{name}: {e}"))?;
    let mut row = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| format!("{name}: {e}"))?;
        let column = |wanted: &str| {
            batch
                .column_by_name(wanted)
                .cloned()
                .ok_or_else(|| format!("{name} has no `{wanted}` column (needs `id` and `text`)"))
        };
        let ids = arrow::compute::cast(&column("id")?, &DataType::Utf8).map_err(|e| format!("{name}: `id`: {e}"))?;
        let texts =
            arrow::compute::cast(&column("text")?, &DataType::Utf8).map_err(|e| format!("{name}: `text`: {e}"))?;
        let (ids, texts) = (ids.as_string::<i32>(), texts.as_string::<i32>());
        for i in 0..batch.num_rows() {
            let here = format!("{name}#{row}");
            row += 1;
            if ids.is_null(i) || ids.value(i).is_empty() {
                out.push(Source::Failed { doc_id: here.clone(), reason: format!("{here}: null or empty `id`") });
            } else if texts.is_null(i) {
                out.push(Source::Failed { doc_id: ids.value(i).to_string(), reason: format!("{here}: null `text`") });
            } else {
                out.push(Source::Record {
                    doc_id: ids.value(i).to_string(),
                    source: here,
                    text: texts.value(i).to_string(),
                });
            }
        }
    }
    Ok(())
}
