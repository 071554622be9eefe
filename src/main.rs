//! `e2llm` command line: a thin layer over the library (the subcommands live in `cli/`).

mod cli;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

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

#[derive(Subcommand)]
enum Command {
    /// Chunk, encode and store documents (files, directories, .jsonl, .parquet) in a database.
    Compress(cli::compress::CompressArgs),
    /// Answer a question about a stored document.
    Ask(cli::answer::AskArgs),
    /// Answer a JSONL file of questions ({"doc_id","question","answers":[...]}) and score them.
    Eval(cli::answer::EvalArgs),
    /// Export every chunk (text, vector, spans) to Parquet (zstd) for analytics.
    Export(cli::transfer::ExportArgs),
    /// Import a Parquet export (or `compress --out` file) into a database.
    Import(cli::transfer::ImportArgs),
    /// Print the encoder vector of each text as a JSON list (the stored format's values).
    Embed(cli::info::EmbedArgs),
    /// Show the models (files, fingerprints, provider) and a database's contents.
    Info(cli::info::InfoArgs),
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Compress(args) => cli::compress::run(args),
        Command::Ask(args) => cli::answer::ask(args),
        Command::Eval(args) => cli::answer::eval(args),
        Command::Export(args) => cli::transfer::export(args),
        Command::Import(args) => cli::transfer::import(args),
        Command::Embed(args) => cli::info::embed(args),
        Command::Info(args) => cli::info::info(args),
    };
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::FAILURE
    })
}
