//! `e2llm export` (a database to Parquet) and `e2llm import` (Parquet into a database).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use e2llm::export::TransferSummary;
use e2llm::store::Store;
use e2llm::Result;

use super::shared::print_json;

#[derive(Args)]
pub struct ExportArgs {
    #[arg(long)]
    db: PathBuf,
    #[arg(long)]
    out: PathBuf,
    #[arg(long)]
    json: bool,
}

pub fn export(args: ExportArgs) -> Result<ExitCode> {
    let store = Store::open_read_only(&args.db)?;
    let summary = e2llm::export::export(&store.reader(), &args.out)?;
    report(&summary, args.json, "exported", &args.out);
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ImportArgs {
    #[arg(long)]
    db: PathBuf,
    /// Parquet files written by `e2llm export`.
    #[arg(required = true)]
    inputs: Vec<PathBuf>,
    #[arg(long)]
    json: bool,
}

pub fn import(args: ImportArgs) -> Result<ExitCode> {
    let mut store = Store::open(&args.db)?;
    for input in &args.inputs {
        let summary = e2llm::export::import(&mut store, input)?;
        report(&summary, args.json, "imported", input);
    }
    Ok(ExitCode::SUCCESS)
}

fn report(summary: &TransferSummary, json: bool, verb: &str, file: &Path) {
    if json {
        print_json(summary);
    } else {
        println!("{}", summary_line(summary, verb, file));
    }
}

fn summary_line(s: &TransferSummary, verb: &str, file: &Path) -> String {
    format!(
        "{verb} {} chunks of {} documents ({}: {} bytes) in {:.2} s ({:.0} rows/s)",
        s.rows,
        s.documents,
        file.display(),
        s.bytes,
        s.seconds,
        s.rows_per_second
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_names_the_file_and_the_rate() {
        let summary = TransferSummary { rows: 120, documents: 3, bytes: 4096, seconds: 0.5, rows_per_second: 240.0 };
        assert_eq!(
            summary_line(&summary, "exported", Path::new("out/chunks.parquet")),
            "exported 120 chunks of 3 documents (out/chunks.parquet: 4096 bytes) in 0.50 s (240 rows/s)"
        );
    }
}
