//! Arguments several subcommands share (models, answering) and JSON output.

use std::path::PathBuf;

use clap::Args;
use e2llm::ask::{
    AskOptions, Mode, Retrieval, DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_SOFT_TOKENS, DEFAULT_MEMORY_CHUNKS,
    DEFAULT_MIN_RELEVANCE, DEFAULT_RETRIEVAL, DEFAULT_TOP_K,
};
use e2llm::engine::{default_models_dir, Engine, EngineOptions};
use e2llm::runtime::{self, Device, Precision};
use e2llm::Result;

#[derive(Args, Clone)]
pub struct ModelArgs {
    /// Models directory (written by `make setup`).
    #[arg(long, env = "E2LLM_MODELS", global = true)]
    pub models: Option<PathBuf>,
    /// Where inference runs: cpu, cuda (fails if CUDA is unavailable) or auto (CUDA if it works).
    #[arg(long, env = "E2LLM_DEVICE", value_enum, default_value_t = Device::Cpu, global = true)]
    pub device: Device,
    /// Encoder and decoder precision: fp32, fp16 (their float16 variants), quantized (their 8-bit
    /// variants, which `make setup` builds; aliases int8, quantised) or auto (the quantised variants on
    /// the CPU and the float16 ones under CUDA, where the models directory has them; float32 otherwise).
    #[arg(long, env = "E2LLM_PRECISION", value_enum, default_value_t = Precision::Auto, global = true)]
    pub precision: Precision,
    /// Inference threads (default: all cores).
    #[arg(long, global = true)]
    pub threads: Option<usize>,
}

impl ModelArgs {
    pub fn engine(&self) -> Result<Engine> {
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

/// How questions are answered: shared by `ask` and `eval`.
#[derive(Args, Clone)]
pub struct AnswerArgs {
    #[arg(long, value_enum, default_value_t = Mode::Rag)]
    pub mode: Mode,
    #[arg(long, default_value_t = DEFAULT_MAX_NEW_TOKENS)]
    pub max_new_tokens: usize,
    /// Chunks retrieved by rag and hybrid.
    #[arg(long, default_value_t = DEFAULT_TOP_K)]
    pub top_k: usize,
    /// How rag and hybrid choose chunks: cosine (dense), BM25 (lexical) or both fused.
    #[arg(long, value_enum, default_value_t = DEFAULT_RETRIEVAL)]
    pub retrieval: Retrieval,
    /// Soft tokens at most in compressed and hybrid: longer documents' chunk vectors are averaged
    /// in runs of consecutive chunks.
    #[arg(long, default_value_t = DEFAULT_MAX_SOFT_TOKENS)]
    pub max_soft_tokens: usize,
    /// Chunks whose memory rcc reads at most (more: chosen by retrieval).
    #[arg(long, default_value_t = DEFAULT_MEMORY_CHUNKS)]
    pub memory_chunks: usize,
    /// Keep generating past the first line break (answers stop at the end of their first line).
    #[arg(long)]
    pub multiline: bool,
    /// Extractive decoding: the answer is copied from the retrieved or full text (rag, hybrid, full).
    #[arg(long)]
    pub extractive: bool,
    /// Let an answer end inside a number (by default a started number goes on to a number of the
    /// prompt's text that it begins, else while the decoder gives its next digit at least 5%).
    #[arg(long)]
    pub cut_numbers: bool,
    /// Let an answer end inside a span of the prompt's text (by default, where it would end while the
    /// text goes on from it, the text's next word goes on when the decoder gives it at least 10%), or
    /// inside a name the question offers as an option (by default "Polly" for "Mary Collins or Polly
    /// Draper?" is given as "Polly Draper").
    #[arg(long)]
    pub cut_spans: bool,
    /// Answer yes/no questions as the decoder ranks "yes" and "no" (by default they compete by how much
    /// the document raised each over the question alone: one more prefill of the question).
    #[arg(long)]
    pub raw_yes_no: bool,
    /// Keep an answer that only repeats words of the question (by default rag, hybrid and full decode
    /// it again, except for "A or B?" questions).
    #[arg(long)]
    pub allow_repeating: bool,
    /// Keep an answer with a word the retrieved text lacks (by default rag and hybrid decode it again
    /// as a span copied from that text, kept when it is whole words of it; the answer then reports the
    /// decoder's own one as `replaced_answer`).
    #[arg(long)]
    pub keep_unquoted: bool,
    /// Of the chunks retrieved (rag, hybrid), keep those that reach this share (0-1) of the best
    /// chunk's dense or BM25 score (0: keep all top-k).
    #[arg(long, default_value_t = DEFAULT_MIN_RELEVANCE)]
    pub min_relevance: f64,
    /// Answer from the first retrieval only (by default, in rag and hybrid, a weak answer — no evidence,
    /// replaced by a copy, or only the question's words again — is answered again from a second
    /// retrieval hop: BM25 of the question with the best chunk's words).
    #[arg(long)]
    pub one_hop: bool,
    /// Keep an answer read off one of several like facts when another fact read matches the question
    /// better (by default rag and hybrid read that fact's chunk alone and keep its answer where the
    /// chunk holds it).
    #[arg(long)]
    pub no_refocus: bool,
    /// Answer a question that asks for all of something ("What are all the ...?") from one fact (by
    /// default rag and hybrid read each like fact of the subjects it names, anywhere in the document,
    /// alone and join the answers).
    #[arg(long)]
    pub no_gather: bool,
    /// Let the decoder choose between the two options of a question that asks which came first or last
    /// (by default rag, hybrid and full answer with the option whose first year in the document is the
    /// earlier or the later, where the document gives both).
    #[arg(long)]
    pub no_compare_years: bool,
}

impl AnswerArgs {
    pub fn options(&self) -> AskOptions {
        AskOptions {
            mode: self.mode,
            max_new_tokens: self.max_new_tokens,
            top_k: self.top_k,
            retrieval: self.retrieval,
            max_soft_tokens: self.max_soft_tokens,
            memory_chunks: self.memory_chunks,
            stop_at_newline: !self.multiline,
            extractive: self.extractive,
            whole_numbers: !self.cut_numbers,
            whole_spans: !self.cut_spans,
            calibrate_yes_no: !self.raw_yes_no,
            avoid_repeating: !self.allow_repeating,
            extractive_fallback: !self.keep_unquoted,
            min_relevance: self.min_relevance,
            second_hop: !self.one_hop,
            refocus: !self.no_refocus,
            gather: !self.no_gather,
            compare_years: !self.no_compare_years,
            ..AskOptions::default()
        }
    }
}

pub fn print_json(value: &impl serde::Serialize) {
    println!("{}", serde_json::to_string_pretty(value).expect("values serialise"));
}
