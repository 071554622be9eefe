//! `e2llm ask` (questions about one document) and `e2llm eval` (a scored question file).

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use e2llm::ask::{AskOptions, Evidence};
use e2llm::eval::{self, EvalSummary};
use e2llm::store::Store;
use e2llm::Result;

use super::shared::{print_json, AnswerArgs, ModelArgs};

#[derive(Args)]
pub struct AskArgs {
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
    /// Under each answer, the sentence of the document that holds it (or a line saying none does:
    /// check such an answer). --json always carries it ("evidence").
    #[arg(long)]
    evidence: bool,
    /// One or more questions, answered in turn in this process (later ones reuse the
    /// document's prefilled prefix in compressed, hybrid and full modes).
    #[arg(required = true)]
    question: Vec<String>,
    #[command(flatten)]
    models: ModelArgs,
}

pub fn ask(args: AskArgs) -> Result<ExitCode> {
    let store = Store::open_read_only(&args.db)?;
    let engine = args.models.engine()?;
    let options =
        AskOptions { prefix_cache: !args.no_prefix_cache, show_prompt: args.show_prompt, ..args.answering.options() };
    for question in &args.question {
        let answer = engine.ask(&store.reader(), &args.doc, question, &options)?;
        if args.json {
            print_json(&answer);
        } else {
            println!("{}", answer.answer);
            if args.evidence {
                println!("  {}", describe_evidence(answer.evidence.as_ref()));
                if let Some(own) = &answer.replaced_answer {
                    println!("  {}", describe_replaced(own));
                }
                if answer.second_hop {
                    println!("  {}", describe_second_hop(&answer.chunks));
                }
                if answer.refocused {
                    println!("  {}", describe_refocused(&answer.chunks));
                }
                if answer.compared {
                    println!("  compared: the option whose year the document gives first or last, as asked");
                }
                if !answer.gathered.is_empty() {
                    println!(
                        "  gathered: {} answers, each read from one like fact of the document",
                        answer.gathered.len()
                    );
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// One line on where the answer stands in the document.
fn describe_evidence(evidence: Option<&Evidence>) -> String {
    match evidence {
        Some(e) if e.read => format!("evidence (chunk {}): {}", e.chunk, e.sentence),
        Some(e) => format!("evidence (chunk {}, not in the prompt): {}", e.chunk, e.sentence),
        None => "no evidence: no sentence of the document holds the answer's words".to_string(),
    }
}

/// One line on an answer the extractive fallback copied from the text.
fn describe_replaced(own: &str) -> String {
    format!("copied from the text: the decoder's own answer, \"{own}\", has a word the text it read lacks")
}

/// One line on an answer read again from a like fact's chunk alone.
fn describe_refocused(chunks: &[usize]) -> String {
    let chunks: Vec<String> = chunks.iter().map(usize::to_string).collect();
    format!(
        "refocused: the first answer stood in one of several like facts and another matched the question \
         better; this one read chunk {} alone",
        chunks.join(", ")
    )
}

/// One line on an answer read from a second retrieval hop.
fn describe_second_hop(chunks: &[usize]) -> String {
    let chunks: Vec<String> = chunks.iter().map(usize::to_string).collect();
    format!(
        "second hop: the first reading's answer had no support in the text it read; this one read chunks {}",
        chunks.join(", ")
    )
}

#[derive(Args)]
pub struct EvalArgs {
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
}

pub fn eval(args: EvalArgs) -> Result<ExitCode> {
    let store = Store::open_read_only(&args.db)?;
    let engine = args.models.engine()?;
    let mut questions = eval::read_questions(&args.questions)?;
    if let Some(limit) = args.limit {
        questions.truncate(limit);
    }
    let mut file = match &args.out {
        Some(path) => {
            Some(std::fs::File::create(path).map_err(|e| e2llm::Error::io(format!("creating {}", path.display()), e))?)
        }
        None => None,
    };
    let progress = if std::io::stderr().is_terminal() {
        indicatif::ProgressBar::new(questions.len() as u64)
    } else {
        indicatif::ProgressBar::hidden()
    };
    let (_, summary) = eval::run(
        &engine,
        &store.reader(),
        &questions,
        &args.answering.options(),
        file.as_mut().map(|f| f as &mut dyn std::io::Write),
        |done| progress.set_position(done as u64),
    )?;
    progress.finish_and_clear();
    if args.json {
        print_json(&summary);
    } else {
        println!("{}", summary_line(&summary));
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_line(s: &EvalSummary) -> String {
    format!(
        "mode {}: {} questions ({} errors): exact match {:.3}, F1 {:.3}, answer contained {:.3}; with evidence {:.3} \
         (F1 {:.3}; without {:.3}); copied answers {:.3} (F1 {:.3}); second hops {:.3} (F1 {:.3}); prompt tokens {:.0} mean; ttft p50 {:.0} ms p90 {:.0} ms; total p50 {:.0} ms p90 \
         {:.0} ms p99 {:.0} ms",
        s.mode,
        s.questions,
        s.errors,
        s.exact_match,
        s.f1,
        s.contained,
        s.with_evidence,
        s.f1_with_evidence,
        s.f1_without_evidence,
        s.replaced,
        s.f1_replaced,
        s.second_hop,
        s.f1_second_hop,
        s.mean_prompt_tokens,
        s.ttft_ms_p50,
        s.ttft_ms_p90,
        s.total_ms_p50,
        s.total_ms_p90,
        s.total_ms_p99
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_summary_line_reports_all_three_quality_metrics() {
        let summary = EvalSummary {
            mode: "hybrid".into(),
            questions: 10,
            errors: 1,
            exact_match: 0.1,
            f1: 0.25,
            contained: 0.3,
            mean_prompt_tokens: 600.4,
            with_evidence: 0.6,
            f1_with_evidence: 0.4,
            f1_without_evidence: 0.025,
            replaced: 0.05,
            f1_replaced: 0.2,
            second_hop: 0.125,
            f1_second_hop: 0.25,
            ttft_ms_p50: 700.0,
            ..EvalSummary::default()
        };
        let line = summary_line(&summary);
        assert!(line.starts_with("mode hybrid: 10 questions (1 errors): exact match 0.100, F1 0.250"), "{line}");
        assert!(line.contains("answer contained 0.300; with evidence 0.600 (F1 0.400; without 0.025)"), "{line}");
        assert!(
            line.contains("without 0.025); copied answers 0.050 (F1 0.200); second hops 0.125 (F1 0.250)"),
            "{line}"
        );
        assert!(line.contains("prompt tokens 600 mean; ttft p50 700 ms"), "{line}");
    }

    #[test]
    fn evidence_is_described_with_its_chunk_or_its_absence() {
        let sentence = "It was built by Thomas Telford.".to_string();
        let read = Evidence { chunk: 3, read: true, sentence: sentence.clone() };
        assert_eq!(describe_evidence(Some(&read)), "evidence (chunk 3): It was built by Thomas Telford.");
        let unread = Evidence { read: false, ..read };
        assert_eq!(describe_evidence(Some(&unread)), format!("evidence (chunk 3, not in the prompt): {sentence}"));
        assert!(describe_evidence(None).starts_with("no evidence"));
        assert_eq!(
            describe_replaced("Riga"),
            "copied from the text: the decoder's own answer, \"Riga\", has a word the text it read lacks"
        );
        assert_eq!(
            describe_second_hop(&[2, 7]),
            "second hop: the first reading's answer had no support in the text it read; this one read chunks 2, 7"
        );
    }
}
