//! The batch job: read documents, chunk them, encode the chunks, write them to SQLite.
//! Documents go in groups: each group's documents are chunked in parallel, their chunks encoded
//! together (length-sorted batches), and the group committed in one transaction, so a killed
//! run loses at most the group in flight and never leaves half a document behind.

use std::path::{Path, PathBuf};
use std::time::Instant;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use crate::chunk::{Chunk, Chunker};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::export::ParquetSink;
use crate::ingest;
use crate::manifest::sha256_hex;
use crate::store::{EncoderInfo, NewChunk, NewDocument, Store, StoredMemory};

#[derive(Debug, Clone)]
pub struct CompressOptions {
    pub chunk_tokens: usize,
    pub batch_size: usize,
    /// Documents per transaction.
    pub group_size: usize,
    /// Re-encode documents even when their content is unchanged.
    pub force: bool,
    pub progress: bool,
    /// Also store each chunk's RCC memory (`--rcc`; the models need an RCC encoder).
    pub rcc: bool,
}

impl Default for CompressOptions {
    fn default() -> Self {
        CompressOptions {
            chunk_tokens: crate::chunk::DEFAULT_CHUNK_TOKENS,
            batch_size: crate::encode::DEFAULT_BATCH_SIZE,
            group_size: 32,
            force: false,
            progress: false,
            rcc: false,
        }
    }
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Failure {
    pub doc_id: String,
    pub reason: String,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct CompressSummary {
    pub added: usize,
    pub replaced: usize,
    pub unchanged: usize,
    pub failed: usize,
    pub failures: Vec<Failure>,
    pub chunks: usize,
    pub tokens: usize,
    pub seconds: f64,
    pub chunks_per_second: f64,
    pub tokens_per_second: f64,
    pub provider: String,
    /// The encoder graph's precision (fp32, fp16 or quantized: which variant ran).
    pub precision: String,
}

/// A document read and hashed, waiting to be chunked.
struct Read {
    doc_id: String,
    source: String,
    text: String,
    content_sha256: String,
    replaces: bool,
}

/// Where compressed documents go: an SQLite database (skips unchanged documents, replaces changed
/// ones) or a Parquet file (`compress --out`, for distributed runs without a database).
pub enum Target<'a> {
    Database(&'a mut Store),
    Parquet(&'a Path),
}

enum Sink<'a> {
    Database { store: &'a mut Store, model_id: i64 },
    Parquet(Box<ParquetSink>),
}

impl Sink<'_> {
    /// The stored content hash of `doc_id` under the current encoder configuration (and, with
    /// `rcc`, only when every chunk has memory of that RCC encoder).
    fn stored(&self, doc_id: &str, rcc: Option<&str>) -> Result<Option<String>> {
        match self {
            Sink::Database { store, model_id } => {
                let hash = store.content_hash(doc_id)?.filter(|(_, id)| id == model_id).map(|(hash, _)| hash);
                match (hash, rcc) {
                    (Some(hash), Some(rcc)) => Ok(store.reader().has_memory(doc_id, rcc)?.then_some(hash)),
                    (hash, _) => Ok(hash),
                }
            }
            Sink::Parquet(_) => Ok(None),
        }
    }

    fn exists(&self, doc_id: &str) -> Result<bool> {
        match self {
            Sink::Database { store, .. } => Ok(store.content_hash(doc_id)?.is_some()),
            Sink::Parquet(_) => Ok(false),
        }
    }

    fn write(&mut self, documents: Vec<NewDocument>) -> Result<()> {
        match self {
            Sink::Database { store, model_id } => store.write_documents(*model_id, &documents),
            Sink::Parquet(sink) => documents.into_iter().try_for_each(|d| sink.write(d)),
        }
    }
}

pub fn compress(
    engine: &Engine,
    target: Target<'_>,
    inputs: &[PathBuf],
    options: &CompressOptions,
) -> Result<CompressSummary> {
    let encoder = engine.encoder()?;
    let rcc = if options.rcc { Some(engine.rcc()?) } else { None };
    let rcc_sha256 = rcc.as_ref().map(|r| r.fingerprint().to_string());
    // Throughput counts from here: model loading is a once-per-process cost.
    let started = Instant::now();
    if options.chunk_tokens > encoder.max_content_tokens() {
        return Err(Error::Invalid(format!(
            "--chunk-tokens {} exceeds the encoder's window of {} tokens",
            options.chunk_tokens,
            encoder.max_content_tokens()
        )));
    }
    let chunker = Chunker::new(encoder.tokenizer(), options.chunk_tokens)?;
    let encoder_info = EncoderInfo {
        fingerprint: encoder.fingerprint().to_string(),
        source: encoder.source().to_string(),
        dim: encoder.dim(),
        chunk_tokens: options.chunk_tokens,
    };
    let (mut sink, parquet_out) = match target {
        Target::Database(store) => {
            let model_id = store.ensure_model(&encoder_info)?;
            (Sink::Database { store, model_id }, None)
        }
        Target::Parquet(out) => {
            let tmp = out.with_extension("parquet.tmp");
            (Sink::Parquet(Box::new(ParquetSink::create(&tmp, &encoder_info)?)), Some((tmp, out.to_path_buf())))
        }
    };
    let sources = ingest::sources(inputs)?;
    let progress = if options.progress { ProgressBar::new(sources.len() as u64) } else { ProgressBar::hidden() };
    progress.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:40} {pos}/{len} docs, {msg}")
            .expect("valid progress template"),
    );
    let mut summary = CompressSummary {
        provider: encoder.provider().to_string(),
        precision: encoder.precision().to_string(),
        ..Default::default()
    };
    let fail = |summary: &mut CompressSummary, doc_id: String, reason: String| {
        progress.println(format!("failed: {doc_id}: {reason}"));
        summary.failed += 1;
        summary.failures.push(Failure { doc_id, reason });
    };

    for group in sources.chunks(options.group_size.max(1)) {
        // Read and hash in parallel, then skip documents whose content is unchanged.
        let read: Vec<_> = group.par_iter().map(|source| source.clone().read()).collect();
        let mut pending = Vec::new();
        for item in read {
            match item {
                Err((doc_id, reason)) => fail(&mut summary, doc_id, reason),
                Ok((doc_id, source, text)) => {
                    let content_sha256 = sha256_hex(text.as_bytes());
                    if !options.force && sink.stored(&doc_id, rcc_sha256.as_deref())?.as_ref() == Some(&content_sha256)
                    {
                        summary.unchanged += 1;
                        continue;
                    }
                    let replaces = sink.exists(&doc_id)?;
                    pending.push(Read { doc_id, source, text, content_sha256, replaces });
                }
            }
        }
        // Chunk in parallel.
        let chunked: Vec<(Read, Result<Vec<Chunk>>)> = pending
            .into_par_iter()
            .map(|read| {
                let chunks = chunker.chunk(&read.text);
                (read, chunks)
            })
            .collect();
        let mut ready = Vec::new();
        for (read, chunks) in chunked {
            match chunks {
                Ok(chunks) if chunks.is_empty() => {
                    fail(&mut summary, read.doc_id, format!("{}: no tokens in text", read.source))
                }
                Ok(chunks) => ready.push((read, chunks)),
                Err(e) => fail(&mut summary, read.doc_id, e.to_string()),
            }
        }
        // RCC memory, document by document (a document whose memory fails is reported and skipped).
        let mut memories: Vec<Vec<Option<StoredMemory>>> = Vec::new();
        if let Some(rcc) = &rcc {
            let mut kept = Vec::new();
            let documents = ready.len();
            for (i, (read, chunks)) in ready.into_iter().enumerate() {
                // The RCC encoder is the decoder: slow enough that progress is shown per document.
                progress.set_message(format!("RCC memory of {} ({} of {documents} in this group)", read.doc_id, i + 1));
                let memory: Result<Vec<Option<StoredMemory>>> = chunks
                    .iter()
                    .map(|chunk| {
                        let memory = rcc.memory(chunk.text(&read.text))?;
                        Ok(Some(StoredMemory {
                            rcc_sha256: rcc.fingerprint().to_string(),
                            slots: memory.slots,
                            blob: memory.to_blob(),
                        }))
                    })
                    .collect();
                match memory {
                    Ok(memory) => {
                        memories.push(memory);
                        kept.push((read, chunks));
                    }
                    Err(e) => fail(&mut summary, read.doc_id, format!("RCC memory: {e}")),
                }
            }
            ready = kept;
        }
        // Encode the group's chunks together: better batches than document by document.
        let rows: Vec<&[u32]> = ready.iter().flat_map(|(_, chunks)| chunks.iter().map(|c| c.ids.as_slice())).collect();
        let vectors = encoder.embed_ids(&rows, options.batch_size)?;
        let mut row = 0;
        let documents: Vec<NewDocument> = ready
            .iter()
            .enumerate()
            .map(|(d, (read, chunks))| NewDocument {
                doc_id: read.doc_id.clone(),
                source: read.source.clone(),
                content_sha256: read.content_sha256.clone(),
                n_bytes: read.text.len(),
                n_tokens: chunks.last().map_or(0, |c| c.token_end),
                chunks: chunks
                    .iter()
                    .enumerate()
                    .map(|(c, chunk)| {
                        row += 1;
                        NewChunk {
                            seq: chunk.seq,
                            text: chunk.text(&read.text).to_string(),
                            token_start: chunk.token_start,
                            token_end: chunk.token_end,
                            byte_start: chunk.byte_start,
                            byte_end: chunk.byte_end,
                            vector: vectors.row(row - 1).to_vec(),
                            memory: memories.get_mut(d).and_then(|m| m[c].take()),
                        }
                    })
                    .collect(),
            })
            .collect();
        for ((read, _), document) in ready.iter().zip(&documents) {
            if read.replaces {
                summary.replaced += 1;
            } else {
                summary.added += 1;
            }
            summary.chunks += document.chunks.len();
            summary.tokens += document.n_tokens;
        }
        sink.write(documents)?;
        progress.inc(group.len() as u64);
        let seconds = started.elapsed().as_secs_f64();
        progress.set_message(format!(
            "{} chunks, {:.0} chunks/s",
            summary.chunks,
            summary.chunks as f64 / seconds.max(1e-9)
        ));
    }
    progress.finish_and_clear();
    if let (Sink::Parquet(parquet), Some((tmp, out))) = (sink, parquet_out) {
        parquet.finish()?;
        std::fs::rename(&tmp, &out)
            .map_err(|e| Error::io(format!("renaming {} to {}", tmp.display(), out.display()), e))?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    summary.chunks_per_second = summary.chunks as f64 / summary.seconds.max(1e-9);
    summary.tokens_per_second = summary.tokens as f64 / summary.seconds.max(1e-9);
    Ok(summary)
}
