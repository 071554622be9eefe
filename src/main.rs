//! `e2llm` command line: a thin layer over the library.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use e2llm::ask::{
    AskOptions, Mode, Retrieval, DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_SOFT_TOKENS, DEFAULT_MEMORY_CHUNKS,
    DEFAULT_RETRIEVAL, DEFAULT_TOP_K,
};
use e2llm::compress::{self, CompressOptions};
use e2llm::engine::{default_models_dir, Engine, EngineOptions};
use e2llm::runtime::{self, Device, Precision};
use e2llm::store::Store;
use e2llm::{eval, Result};

#[derive(Parser)]
#[command(
    name = "e2llm",
    version,
    about = "Compress long documents into chunk vectors in SQLite and answer questions over them"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// Models directory (written by `make setup`).
    #[arg(long, env = "E2LLM_MODELS", global = true)]
    models: Option<PathBuf>,
    /// Where inference runs: cpu, cuda (fails if CUDA is unavailable) or auto (CUDA if it works).
    #[arg(long, env = "E2LLM_DEVICE", value_enum, default_value_t = Device::Cpu, global = true)]
    device: Device,
    /// Encoder and decoder precision: fp32, fp16 (their float16 variants), quantized (their 8-bit
    /// variants, which `make setup` builds; aliases int8, quantised) or auto (the quantised variants on the CPU and the
    /// float16 ones under CUDA, where the models directory has them; float32 otherwise).
    #[arg(long, env = "E2LLM_PRECISION", value_enum, default_value_t = Precision::Auto, global = true)]
    precision: Precision,
    /// Inference threads (default: all cores).
    #[arg(long, global = true)]
    threads: Option<usize>,
}

/// How questions are answered: shared by `ask` and `eval`.
#[derive(Args, Clone)]
struct AnswerArgs {
    #[arg(long, value_enum, default_value_t = Mode::Rag)]
    mode: Mode,
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    max_new_tokens: usize,
    /// Chunks retrieved by rag and hybrid.
    #[arg(long, default_value_t = DEFAULT_TOP_K)]
    top_k: usize,
    /// How rag and hybrid choose chunks: cosine (dense), BM25 (lexical) or both fused.
    #[arg(long, value_enum, default_value_t = DEFAULT_RETRIEVAL)]
    retrieval: Retrieval,
    /// Soft tokens at most in compressed and hybrid: longer documents' chunk vectors are averaged
    /// in runs of consecutive chunks.
    #[arg(long, default_value_t = DEFAULT_MAX_SOFT_TOKENS)]
    max_soft_tokens: usize,
    /// Chunks whose memory rcc reads at most (more: chosen by retrieval).
    #[arg(long, default_value_t = DEFAULT_MEMORY_CHUNKS)]
    memory_chunks: usize,
    /// Keep generating past the first line break (answers stop at the end of their first line).
    #[arg(long)]
    multiline: bool,
    /// Extractive decoding: the answer is copied from the retrieved or full text (rag, hybrid, full).
    #[arg(long)]
    extractive: bool,
}

impl AnswerArgs {
    fn options(&self) -> AskOptions {
        AskOptions {
            mode: self.mode,
            max_new_tokens: self.max_new_tokens,
            top_k: self.top_k,
            retrieval: self.retrieval,
            max_soft_tokens: self.max_soft_tokens,
            memory_chunks: self.memory_chunks,
            stop_at_newline: !self.multiline,
            extractive: self.extractive,
            ..AskOptions::default()
        }
    }
}

impl ModelArgs {
    fn engine(&self) -> Result<Engine> {
        let threads = self.threads.unwrap_or_else(runtime::available_threads).max(1);
        if self.threads.is_some() {
            // Size rayon's pool to match (ignored if it was already built).
            let _ = rayon::ThreadPoolBuilder::new().num_threads(threads).build_global();
        }
        Engine::new(EngineOptions {
            models_dir: self.models.clone().unwrap_or_else(default_models_dir),
            device: self.device,
            precision: Some(self.precision),
            threads,
        })
    }
}

#[derive(Subcommand)]
enum Command {
    /// Chunk, encode and store documents (files, directories, .jsonl, .parquet) in a database.
    Compress {
        /// SQLite database to write (created if missing).
        #[arg(long, required_unless_present = "out", conflicts_with = "out")]
        db: Option<PathBuf>,
        /// Write a Parquet file instead of a database (for distributed runs; load it with `e2llm import`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Text/markdown files, directories (recursive), .jsonl ({"id","text"} per line) or .parquet (id, text).
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        /// Encoder batch size.
        #[arg(long, default_value_t = e2llm::encode::DEFAULT_BATCH_SIZE)]
        batch_size: usize,
        /// Chunk length in encoder tokens.
        #[arg(long, default_value_t = e2llm::chunk::DEFAULT_CHUNK_TOKENS)]
        chunk_tokens: usize,
        /// Re-encode documents whose content is unchanged.
        #[arg(long)]
        force: bool,
        /// Also store each chunk's RCC memory (for `--mode rcc`; needs the RCC encoder).
        #[arg(long)]
        rcc: bool,
        /// Print the summary as JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Answer a question about a stored document.
    Ask {
        #[arg(long)]
        db: PathBuf,
        /// Document id (see `e2llm info --db FILE --docs`).
        #[arg(long)]
        doc: String,
        #[command(flatten)]
        answering: AnswerArgs,
        /// Print one JSON object per question (answer, mode, prompt_tokens, ttft_ms, total_ms, ...).
        #[arg(long)]
        json: bool,
        /// Do not reuse the document's prompt prefix between questions (see E2LLM_PREFIX_CACHE_MB).
        #[arg(long)]
        no_prefix_cache: bool,
        /// With --json: add the prompt as the decoder read it ("prompt": token ids, soft-token counts).
        #[arg(long)]
        show_prompt: bool,
        /// One or more questions, answered in turn in this process (later ones reuse the
        /// document's prefilled prefix in compressed, hybrid and full modes).
        #[arg(required = true)]
        question: Vec<String>,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Answer a JSONL file of questions ({"doc_id","question","answers":[...]}) and score them.
    Eval {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        questions: PathBuf,
        #[command(flatten)]
        answering: AnswerArgs,
        /// Write per-question results (JSONL) here.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Only the first N questions.
        #[arg(long)]
        limit: Option<usize>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Export every chunk (text, vector, spans) to Parquet (zstd) for analytics.
    Export {
        #[arg(long)]
        db: PathBuf,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Import a Parquet export (or `compress --out` file) into a database.
    Import {
        #[arg(long)]
        db: PathBuf,
        /// Parquet files written by `e2llm export`.
        #[arg(required = true)]
        inputs: Vec<PathBuf>,
        #[arg(long)]
        json: bool,
    },
    /// Print the encoder vector of each text as a JSON list (the stored format's values).
    Embed {
        #[arg(required = true)]
        texts: Vec<String>,
        #[command(flatten)]
        models: ModelArgs,
    },
    /// Show the models (files, fingerprints, provider) and a database's contents.
    Info {
        #[arg(long)]
        db: Option<PathBuf>,
        /// List document ids.
        #[arg(long)]
        docs: bool,
        /// Check every model file's sha256 against the manifest.
        #[arg(long)]
        verify: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        models: ModelArgs,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("values serialise"));
}

fn report_transfer(summary: &e2llm::export::TransferSummary, json: bool, verb: &str, file: &std::path::Path) {
    if json {
        print_json(summary);
    } else {
        println!(
            "{verb} {} chunks of {} documents ({}: {} bytes) in {:.2} s ({:.0} rows/s)",
            summary.rows,
            summary.documents,
            file.display(),
            summary.bytes,
            summary.seconds,
            summary.rows_per_second
        );
    }
}

fn run(command: Command) -> Result<ExitCode> {
    match command {
        Command::Compress { db, out, inputs, batch_size, chunk_tokens, force, rcc, json, models } => {
            let engine = models.engine()?;
            let mut store = db.as_ref().map(|db| Store::open(db)).transpose()?;
            let target = match (&mut store, &out) {
                (Some(store), _) => compress::Target::Database(store),
                (None, Some(out)) => compress::Target::Parquet(out),
                (None, None) => unreachable!("clap requires --db or --out"),
            };
            let options = CompressOptions {
                chunk_tokens,
                batch_size,
                force,
                rcc,
                progress: std::io::stderr().is_terminal(),
                ..CompressOptions::default()
            };
            let summary = compress::compress(&engine, target, &inputs, &options)?;
            if json {
                print_json(&summary);
            } else {
                for failure in &summary.failures {
                    eprintln!("failed: {}: {}", failure.doc_id, failure.reason);
                }
                println!(
                    "{} added, {} replaced, {} unchanged, {} failed; {} chunks, {} tokens in {:.1} s ({:.1} chunks/s, {:.0} tokens/s, {})",
                    summary.added, summary.replaced, summary.unchanged, summary.failed, summary.chunks, summary.tokens,
                    summary.seconds, summary.chunks_per_second, summary.tokens_per_second, summary.provider
                );
            }
            Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
        }
        Command::Ask { db, doc, answering, json, no_prefix_cache, show_prompt, question, models } => {
            let store = Store::open_read_only(&db)?;
            let engine = models.engine()?;
            let options = AskOptions { prefix_cache: !no_prefix_cache, show_prompt, ..answering.options() };
            for question in &question {
                let answer = engine.ask(&store.reader(), &doc, question, &options)?;
                if json {
                    print_json(&answer);
                } else {
                    println!("{}", answer.answer);
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Eval { db, questions, answering, out, limit, json, models } => {
            let store = Store::open_read_only(&db)?;
            let engine = models.engine()?;
            let mut questions = eval::read_questions(&questions)?;
            if let Some(limit) = limit {
                questions.truncate(limit);
            }
            let mut file = match &out {
                Some(path) => Some(
                    std::fs::File::create(path)
                        .map_err(|e| e2llm::Error::io(format!("creating {}", path.display()), e))?,
                ),
                None => None,
            };
            let progress = if std::io::stderr().is_terminal() {
                indicatif::ProgressBar::new(questions.len() as u64)
            } else {
                indicatif::ProgressBar::hidden()
            };
            let options = answering.options();
            let (_, summary) = eval::run(
                &engine,
                &store.reader(),
                &questions,
                &options,
                file.as_mut().map(|f| f as &mut dyn std::io::Write),
                |done| progress.set_position(done as u64),
            )?;
            progress.finish_and_clear();
            if json {
                print_json(&summary);
            } else {
                println!(
                    "mode {}: {} questions ({} errors): exact match {:.3}, F1 {:.3}, answer contained {:.3}; \
                     prompt tokens {:.0} mean; ttft p50 {:.0} ms p90 {:.0} ms; total p50 {:.0} ms p90 {:.0} ms p99 {:.0} ms",
                    summary.mode, summary.questions, summary.errors, summary.exact_match, summary.f1, summary.contained,
                    summary.mean_prompt_tokens, summary.ttft_ms_p50, summary.ttft_ms_p90, summary.total_ms_p50,
                    summary.total_ms_p90, summary.total_ms_p99
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Export { db, out, json } => {
            let store = Store::open_read_only(&db)?;
            let summary = e2llm::export::export(&store.reader(), &out)?;
            report_transfer(&summary, json, "exported", &out);
            Ok(ExitCode::SUCCESS)
        }
        Command::Import { db, inputs, json } => {
            let mut store = Store::open(&db)?;
            for input in &inputs {
                let summary = e2llm::export::import(&mut store, input)?;
                report_transfer(&summary, json, "imported", input);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Embed { texts, models } => {
            let encoder = models.engine()?.encoder()?;
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            let vectors = encoder.embed(&refs, e2llm::encode::DEFAULT_BATCH_SIZE)?;
            for i in 0..vectors.len() {
                println!("{}", serde_json::to_string(vectors.row(i)).expect("floats serialise"));
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Info { db, docs, verify, json, models } => {
            let engine = models.engine()?;
            let manifest = engine.manifest();
            if verify {
                manifest.verify()?;
            }
            let (_, library) = runtime::environment(&manifest.dir)?;
            // The provider actually used (for `--device auto`): the encoder is the cheapest model to load.
            let provider = engine.encoder()?.provider();
            let (encoder_precision, decoder_precision) = engine.precisions(provider)?;
            let store = db.as_ref().map(|path| Store::open_read_only(path)).transpose()?;
            let stats = store.as_ref().map(|s| s.reader().stats()).transpose()?;
            let doc_ids = match (&store, docs) {
                (Some(store), true) => Some(store.reader().doc_ids()?),
                _ => None,
            };
            let info = serde_json::json!({
                "version": e2llm::VERSION,
                "models_dir": manifest.dir,
                "onnxruntime": library,
                "device": engine.options().device,
                "provider": provider,
                "precision": {"requested": engine.requested_precision(), "encoder": encoder_precision, "decoder": decoder_precision},
                "encoder": {"source": manifest.encoder.source, "dim": manifest.encoder.dim, "fingerprint": manifest.encoder.fingerprint},
                "decoder": {"source": manifest.decoder.source, "hidden": manifest.decoder.hidden, "layers": manifest.decoder.layers,
                            "context_length": manifest.decoder.context_length, "fingerprint": manifest.decoder.fingerprint},
                "adapter": manifest.adapter,
                "rcc": manifest.rcc.as_ref().map(|r| serde_json::json!({"source": r.source, "ratio": r.ratio, "fingerprint": r.fingerprint})),
                "files": manifest.files,
                "verified": verify,
                "database": stats,
                "documents": doc_ids,
            });
            if json {
                print_json(&info);
            } else {
                println!("e2llm {}", e2llm::VERSION);
                println!("models      {}", manifest.dir.display());
                println!("runtime     {}", library.display());
                println!(
                    "provider    {provider} (--device {})",
                    format!("{:?}", engine.options().device).to_lowercase()
                );
                println!(
                    "precision   encoder {encoder_precision}, decoder {decoder_precision} (--precision {})",
                    engine.requested_precision()
                );
                println!(
                    "encoder     {} (dim {}, fingerprint {})",
                    manifest.encoder.source,
                    manifest.encoder.dim,
                    &manifest.encoder.fingerprint[..16.min(manifest.encoder.fingerprint.len())]
                );
                println!(
                    "decoder     {} (hidden {}, {} layers, context {}, fingerprint {})",
                    manifest.decoder.source,
                    manifest.decoder.hidden,
                    manifest.decoder.layers,
                    manifest.decoder.context_length,
                    &manifest.decoder.fingerprint[..16.min(manifest.decoder.fingerprint.len())]
                );
                match &manifest.adapter {
                    Some(adapter) => {
                        println!("adapter     {} ({} -> {})", adapter.source, adapter.encoder_dim, adapter.hidden)
                    }
                    None => println!("adapter     none (compressed and hybrid modes unavailable)"),
                }
                match &manifest.rcc {
                    Some(rcc) => println!("rcc         {} (1 memory slot per {} tokens)", rcc.source, rcc.ratio),
                    None => println!("rcc         none (compress --rcc and mode rcc unavailable)"),
                }
                if verify {
                    println!("files       {} verified (sha256)", manifest.files.len());
                }
                if let Some(stats) = stats {
                    println!(
                        "database    {} documents, {} chunks, {} text bytes, {} vector bytes, {} RCC memory bytes, {} file bytes",
                        stats.documents, stats.chunks, stats.text_bytes, stats.vector_bytes, stats.memory_bytes, stats.file_bytes
                    );
                }
                for id in doc_ids.unwrap_or_default() {
                    println!("  {id}");
                }
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
