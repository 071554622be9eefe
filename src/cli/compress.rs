//! `e2llm compress`: documents into a database (or a Parquet file), with a summary.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use e2llm::compress::{self, CompressOptions, CompressSummary};
use e2llm::store::Store;
use e2llm::Result;

use super::shared::{print_json, ModelArgs};

#[derive(Args)]
pub struct CompressArgs {
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
}

pub fn run(args: CompressArgs) -> Result<ExitCode> {
    let engine = args.models.engine()?;
    let mut store = args.db.as_ref().map(|db| Store::open(db)).transpose()?;
    let target = match (&mut store, &args.out) {
        (Some(store), _) => compress::Target::Database(store),
        (None, Some(out)) => compress::Target::Parquet(out),
        (None, None) => unreachable!("clap requires --db or --out"),
    };
    let options = CompressOptions {
        chunk_tokens: args.chunk_tokens,
        batch_size: args.batch_size,
        force: args.force,
        rcc: args.rcc,
        progress: std::io::stderr().is_terminal(),
        ..CompressOptions::default()
    };
    let summary = compress::compress(&engine, target, &args.inputs, &options)?;
    if args.json {
        print_json(&summary);
    } else {
        for failure in &summary.failures {
            eprintln!("failed: {}: {}", failure.doc_id, failure.reason);
        }
        println!("{}", summary_line(&summary));
    }
    Ok(if summary.failed > 0 { ExitCode::FAILURE } else { ExitCode::SUCCESS })
}

fn summary_line(s: &CompressSummary) -> String {
    format!(
        "{} added, {} replaced, {} unchanged, {} failed; {} chunks, {} tokens in {:.1} s ({:.1} chunks/s, {:.0} tokens/s, {})",
        s.added, s.replaced, s.unchanged, s.failed, s.chunks, s.tokens, s.seconds, s.chunks_per_second,
        s.tokens_per_second, s.provider
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_counts_every_outcome() {
        let summary = CompressSummary {
            added: 2,
            replaced: 1,
            unchanged: 3,
            failed: 1,
            chunks: 40,
            tokens: 5000,
            seconds: 2.0,
            chunks_per_second: 20.0,
            tokens_per_second: 2500.0,
            provider: "CPUExecutionProvider".into(),
            ..CompressSummary::default()
        };
        assert_eq!(
            summary_line(&summary),
            "2 added, 1 replaced, 3 unchanged, 1 failed; 40 chunks, 5000 tokens in 2.0 s (20.0 chunks/s, 2500 tokens/s, \
             CPUExecutionProvider)"
        );
    }
}
