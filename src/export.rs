//! Parquet export and import (a contract users rely on: ARCHITECTURE.md, "Parquet"). One row per chunk: `doc_id`, `seq`, `text`,
//! `vector: FixedSizeList<Float32, dim>`, plus the spans and document fields that make an import
//! reproduce the database exactly. Schema metadata records the encoder fingerprint, dim and chunk
//! size; zstd compression.

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    Array, ArrayRef, AsArray, BinaryArray, FixedSizeListArray, Float32Array, Int32Array, Int64Array, RecordBatch,
    StringArray,
};
use arrow::datatypes::{DataType, Field, Float32Type, Int32Type, Int64Type, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::store::{EncoderInfo, NewChunk, NewDocument, Reader, Store, StoredMemory};

pub const META_FINGERPRINT: &str = "e2llm.encoder_fingerprint";
pub const META_SOURCE: &str = "e2llm.encoder_source";
pub const META_DIM: &str = "e2llm.dim";
pub const META_CHUNK_TOKENS: &str = "e2llm.chunk_tokens";
pub const META_VERSION: &str = "e2llm.version";
const ROWS_PER_BATCH: usize = 8192;
/// Columns an export older than RCC lacks (read as no memory).
const MEMORY_COLUMNS: [&str; 3] = ["rcc_sha256", "memory_slots", "memory"];

#[derive(Debug, Clone, serde::Serialize)]
pub struct TransferSummary {
    pub rows: usize,
    pub documents: usize,
    pub bytes: u64,
    pub seconds: f64,
    pub rows_per_second: f64,
}

pub fn schema(encoder: &EncoderInfo) -> Arc<Schema> {
    let metadata = HashMap::from([
        (META_FINGERPRINT.to_string(), encoder.fingerprint.clone()),
        (META_SOURCE.to_string(), encoder.source.clone()),
        (META_DIM.to_string(), encoder.dim.to_string()),
        (META_CHUNK_TOKENS.to_string(), encoder.chunk_tokens.to_string()),
        (META_VERSION.to_string(), crate::VERSION.to_string()),
    ]);
    let item = Arc::new(Field::new("item", DataType::Float32, false));
    Arc::new(Schema::new_with_metadata(
        vec![
            Field::new("doc_id", DataType::Utf8, false),
            Field::new("seq", DataType::Int32, false),
            Field::new("text", DataType::Utf8, false),
            Field::new("vector", DataType::FixedSizeList(item, encoder.dim as i32), false),
            Field::new("token_start", DataType::Int32, false),
            Field::new("token_end", DataType::Int32, false),
            Field::new("byte_start", DataType::Int64, false),
            Field::new("byte_end", DataType::Int64, false),
            Field::new("source", DataType::Utf8, true),
            Field::new("content_sha256", DataType::Utf8, false),
            Field::new("doc_tokens", DataType::Int64, false),
            Field::new("doc_bytes", DataType::Int64, false),
            // RCC memory (`compress --rcc`), null without; absent from exports older than RCC.
            Field::new("rcc_sha256", DataType::Utf8, true),
            Field::new("memory_slots", DataType::Int32, true),
            Field::new("memory", DataType::Binary, true),
        ],
        metadata,
    ))
}

/// Writes documents to Parquet, `ROWS_PER_BATCH` rows per record batch.
pub struct ParquetSink {
    writer: ArrowWriter<File>,
    schema: Arc<Schema>,
    dim: usize,
    pending: Vec<(Arc<NewDocument>, usize)>,
    pub rows: usize,
    pub documents: usize,
    path: String,
}

impl ParquetSink {
    pub fn create(path: &Path, encoder: &EncoderInfo) -> Result<ParquetSink> {
        let label = path.display().to_string();
        let file = File::create(path).map_err(|e| Error::parquet(&label, e))?;
        let properties = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).map_err(|e| Error::parquet(&label, e))?))
            .build();
        let schema = schema(encoder);
        let writer =
            ArrowWriter::try_new(file, schema.clone(), Some(properties)).map_err(|e| Error::parquet(&label, e))?;
        Ok(ParquetSink { writer, schema, dim: encoder.dim, pending: Vec::new(), rows: 0, documents: 0, path: label })
    }

    pub fn write(&mut self, document: NewDocument) -> Result<()> {
        let document = Arc::new(document);
        for seq in 0..document.chunks.len() {
            self.pending.push((document.clone(), seq));
        }
        self.documents += 1;
        if self.pending.len() >= ROWS_PER_BATCH {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.pending);
        let chunk = |i: usize| &rows[i].0.chunks[rows[i].1];
        let n = rows.len();
        let mut values = Vec::with_capacity(n * self.dim);
        for i in 0..n {
            let vector = &chunk(i).vector;
            if vector.len() != self.dim {
                return Err(Error::VectorLength { len: vector.len() * 4, expected: self.dim * 4, dim: self.dim });
            }
            values.extend_from_slice(vector);
        }
        let item = Arc::new(Field::new("item", DataType::Float32, false));
        let vectors = FixedSizeListArray::try_new(item, self.dim as i32, Arc::new(Float32Array::from(values)), None)
            .map_err(|e| Error::parquet(&self.path, e))?;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values((0..n).map(|i| rows[i].0.doc_id.as_str()))),
            Arc::new(Int32Array::from_iter_values((0..n).map(|i| chunk(i).seq as i32))),
            Arc::new(StringArray::from_iter_values((0..n).map(|i| chunk(i).text.as_str()))),
            Arc::new(vectors),
            Arc::new(Int32Array::from_iter_values((0..n).map(|i| chunk(i).token_start as i32))),
            Arc::new(Int32Array::from_iter_values((0..n).map(|i| chunk(i).token_end as i32))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| chunk(i).byte_start as i64))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| chunk(i).byte_end as i64))),
            Arc::new(StringArray::from_iter((0..n).map(|i| Some(rows[i].0.source.as_str())))),
            Arc::new(StringArray::from_iter_values((0..n).map(|i| rows[i].0.content_sha256.as_str()))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| rows[i].0.n_tokens as i64))),
            Arc::new(Int64Array::from_iter_values((0..n).map(|i| rows[i].0.n_bytes as i64))),
            Arc::new(StringArray::from_iter((0..n).map(|i| chunk(i).memory.as_ref().map(|m| m.rcc_sha256.as_str())))),
            Arc::new(Int32Array::from_iter((0..n).map(|i| chunk(i).memory.as_ref().map(|m| m.slots as i32)))),
            Arc::new(BinaryArray::from_iter((0..n).map(|i| chunk(i).memory.as_ref().map(|m| m.blob.as_slice())))),
        ];
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| Error::parquet(&self.path, e))?;
        self.writer.write(&batch).map_err(|e| Error::parquet(&self.path, e))?;
        self.rows += n;
        Ok(())
    }

    pub fn finish(mut self) -> Result<(usize, usize)> {
        self.flush()?;
        self.writer.close().map_err(|e| Error::parquet(&self.path, e))?;
        Ok((self.rows, self.documents))
    }
}

/// Exports every chunk of the database. Written to `out.tmp` and renamed, so a failed export
/// never leaves a file that looks complete.
pub fn export(reader: &Reader<'_>, out: &Path) -> Result<TransferSummary> {
    let started = Instant::now();
    let encoder = reader.encoder_info()?;
    let tmp = out.with_extension("parquet.tmp");
    let mut sink = ParquetSink::create(&tmp, &encoder)?;
    for doc_id in reader.doc_ids()? {
        sink.write(reader.full_document(&doc_id)?)?;
    }
    let (rows, documents) = sink.finish()?;
    std::fs::rename(&tmp, out).map_err(|e| Error::io(format!("renaming {} to {}", tmp.display(), out.display()), e))?;
    Ok(summary(rows, documents, out, started))
}

fn summary(rows: usize, documents: usize, file: &Path, started: Instant) -> TransferSummary {
    let seconds = started.elapsed().as_secs_f64();
    TransferSummary {
        rows,
        documents,
        bytes: std::fs::metadata(file).map(|m| m.len()).unwrap_or(0),
        seconds,
        rows_per_second: rows as f64 / seconds.max(1e-9),
    }
}

/// Reads an export (or `compress --out`) file back into documents, checking its schema. A damaged
/// file is an error naming it, never a panic.
pub fn read(path: &Path) -> Result<(EncoderInfo, Vec<NewDocument>)> {
    // The parquet crate panics on some corrupt files instead of returning an error (found by the
    // bit-flip property test in tests/store.rs; e.g. apache/arrow-rs#9839, malformed Thrift fields
    // in page headers, parquet 57). Nothing of a failed read is kept, so unwinding out of it is safe.
    std::panic::catch_unwind(|| read_file(path)).unwrap_or_else(|panic| {
        Err(Error::parquet(
            path.display().to_string(),
            format!(
                "corrupt file: the Parquet reader failed ({}); re-create it with `e2llm export`",
                crate::error::panic_message(&*panic)
            ),
        ))
    })
}

fn read_file(path: &Path) -> Result<(EncoderInfo, Vec<NewDocument>)> {
    let label = path.display().to_string();
    let err = |reason: String| Error::parquet(&label, reason);
    let file = File::open(path).map_err(|e| Error::parquet(&label, e))?;
    let builder =
        ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| err(format!("not a readable Parquet file: {e}")))?;
    let metadata = builder.schema().metadata().clone();
    let meta = |key: &str| {
        metadata.get(key).cloned().ok_or_else(|| err(format!("schema metadata lacks `{key}` (not an e2llm export?)")))
    };
    let number = |key: &str| meta(key)?.parse::<usize>().map_err(|e| err(format!("`{key}`: {e}")));
    let encoder = EncoderInfo {
        fingerprint: meta(META_FINGERPRINT)?,
        source: meta(META_SOURCE).unwrap_or_default(),
        dim: number(META_DIM)?,
        chunk_tokens: number(META_CHUNK_TOKENS)?,
    };
    let expected = schema(&encoder);
    for field in expected.fields() {
        match builder.schema().field_with_name(field.name()) {
            Ok(found) if found.data_type() == field.data_type() => {}
            Ok(found) => {
                return Err(err(format!(
                    "column `{}` is {}, expected {}",
                    field.name(),
                    found.data_type(),
                    field.data_type()
                )))
            }
            Err(_) if MEMORY_COLUMNS.contains(&field.name().as_str()) => {}
            Err(_) => return Err(err(format!("missing column `{}`", field.name()))),
        }
    }
    let reader = builder.build().map_err(|e| Error::parquet(&label, e))?;
    let mut documents: Vec<NewDocument> = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| Error::parquet(&label, e))?;
        let column = |name: &str| batch.column_by_name(name).expect("columns checked above");
        let strings = |name: &str| column(name).as_string::<i32>().clone();
        let (doc_ids, texts, sources, hashes) =
            (strings("doc_id"), strings("text"), strings("source"), strings("content_sha256"));
        let int32 = |name: &str| column(name).as_primitive::<Int32Type>().clone();
        let int64 = |name: &str| column(name).as_primitive::<Int64Type>().clone();
        let (seqs, token_starts, token_ends) = (int32("seq"), int32("token_start"), int32("token_end"));
        let (byte_starts, byte_ends, doc_tokens, doc_bytes) =
            (int64("byte_start"), int64("byte_end"), int64("doc_tokens"), int64("doc_bytes"));
        let vectors = column("vector").as_fixed_size_list();
        let memory_shas = batch.column_by_name("rcc_sha256").map(|c| c.as_string::<i32>().clone());
        let memory_slots = batch.column_by_name("memory_slots").map(|c| c.as_primitive::<Int32Type>().clone());
        let memory_blobs = batch.column_by_name("memory").map(|c| c.as_binary::<i32>().clone());
        for i in 0..batch.num_rows() {
            if doc_ids.is_null(i) || texts.is_null(i) || vectors.is_null(i) {
                return Err(err(format!("row {i}: null doc_id, text or vector")));
            }
            let values = vectors.value(i);
            let values = values.as_primitive::<Float32Type>();
            if values.null_count() > 0 || values.values().iter().any(|v| !v.is_finite()) {
                return Err(err(format!(
                    "document `{}` chunk {}: vector has null, NaN or infinite values",
                    doc_ids.value(i),
                    seqs.value(i)
                )));
            }
            let doc_id = doc_ids.value(i);
            if documents.last().is_none_or(|d| d.doc_id != doc_id) {
                documents.push(NewDocument {
                    doc_id: doc_id.to_string(),
                    source: if sources.is_null(i) { String::new() } else { sources.value(i).to_string() },
                    content_sha256: hashes.value(i).to_string(),
                    n_bytes: doc_bytes.value(i) as usize,
                    n_tokens: doc_tokens.value(i) as usize,
                    chunks: Vec::new(),
                });
            }
            let document = documents.last_mut().expect("pushed above");
            let seq = seqs.value(i);
            if seq < 0 || seq as usize != document.chunks.len() {
                return Err(err(format!("document `{doc_id}`: chunk seq {seq} out of order (rows of a document must be contiguous, seq 0, 1, ...)")));
            }
            document.chunks.push(NewChunk {
                seq: seq as usize,
                text: texts.value(i).to_string(),
                token_start: token_starts.value(i) as usize,
                token_end: token_ends.value(i) as usize,
                byte_start: byte_starts.value(i) as usize,
                byte_end: byte_ends.value(i) as usize,
                vector: values.values().to_vec(),
                memory: match (&memory_shas, &memory_slots, &memory_blobs) {
                    (Some(shas), Some(slots), Some(blobs)) if !shas.is_null(i) => {
                        if slots.is_null(i) || blobs.is_null(i) || slots.value(i) < 0 {
                            return Err(err(format!("document `{doc_id}` chunk {seq}: memory without its slot count")));
                        }
                        Some(StoredMemory {
                            rcc_sha256: shas.value(i).to_string(),
                            slots: slots.value(i) as usize,
                            blob: blobs.value(i).to_vec(),
                        })
                    }
                    _ => None,
                },
            });
        }
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = documents.iter().find(|d| !seen.insert(d.doc_id.as_str())) {
        return Err(err(format!("document `{}` appears in two separate runs of rows", dup.doc_id)));
    }
    Ok((encoder, documents))
}

/// Imports an export into a database (same encoder required), replacing documents with the
/// same id; all documents of the file in one transaction.
pub fn import(store: &mut Store, input: &Path) -> Result<TransferSummary> {
    let started = Instant::now();
    let (encoder, documents) = read(input)?;
    let model_id = store.ensure_model(&encoder)?;
    store.write_documents(model_id, &documents)?;
    let rows = documents.iter().map(|d| d.chunks.len()).sum();
    Ok(summary(rows, documents.len(), input, started))
}
