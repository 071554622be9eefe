//! `e2llm eval`: answer a file of questions and score the answers (exact match, token F1,
//! answer contained), with latency percentiles.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;

use crate::ask::{Answer, AskOptions, Evidence};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::store::Reader;

#[derive(Debug, Clone, serde::Deserialize)]
pub struct Question {
    pub doc_id: String,
    pub question: String,
    pub answers: Vec<String>,
    #[serde(default)]
    pub id: Option<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct Scored {
    pub id: Option<serde_json::Value>,
    pub doc_id: String,
    pub question: String,
    pub answers: Vec<String>,
    pub prediction: String,
    pub exact_match: f64,
    pub f1: f64,
    pub contained: f64,
    pub prompt_tokens: usize,
    /// Chunks whose raw text was in the prompt (rag, hybrid).
    pub chunks: Vec<usize>,
    /// The sentence of the document that holds the prediction, if any (see `Answer::evidence`).
    pub evidence: Option<Evidence>,
    /// The decoder's own answer when the extractive fallback replaced it (see `Answer::replaced_answer`).
    pub replaced_answer: Option<String>,
    /// The answer came from a second retrieval hop (see `Answer::second_hop`).
    pub second_hop: bool,
    /// The answer was read again from a parallel fact's chunk alone (see `Answer::refocused`).
    pub refocused: bool,
    /// The answer is the option whose year the document gives first or last (see `Answer::compared`).
    pub compared: bool,
    pub ttft_ms: f64,
    pub total_ms: f64,
    pub error: Option<String>,
}

#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct EvalSummary {
    pub mode: String,
    pub questions: usize,
    pub errors: usize,
    pub exact_match: f64,
    pub f1: f64,
    pub contained: f64,
    pub mean_prompt_tokens: f64,
    /// Share of the answers that have evidence (a sentence of the document holding them).
    pub with_evidence: f64,
    /// Mean F1 of the answers with evidence, and of those without (0 where there are none): how much
    /// more an answer with evidence can be trusted.
    pub f1_with_evidence: f64,
    pub f1_without_evidence: f64,
    /// Share of the answers the extractive fallback copied from the text (the decoder's own had a word
    /// the text lacks), and their mean F1 (0 where there are none).
    pub replaced: f64,
    pub f1_replaced: f64,
    /// Share of the answers that came from a second retrieval hop, and their mean F1.
    pub second_hop: f64,
    pub f1_second_hop: f64,
    /// Share of the answers read again from a parallel fact's chunk alone, and their mean F1.
    pub refocused: f64,
    pub f1_refocused: f64,
    /// Share of the answers chosen by the years of two options, and their mean F1.
    pub compared: f64,
    pub f1_compared: f64,
    pub ttft_ms_p50: f64,
    pub ttft_ms_p90: f64,
    pub total_ms_p50: f64,
    pub total_ms_p90: f64,
    pub total_ms_p99: f64,
}

/// Lowercase, drop punctuation and English articles, collapse whitespace.
pub fn normalize(text: &str) -> String {
    let lowered: String =
        text.to_lowercase().chars().map(|c| if c.is_alphanumeric() || c.is_whitespace() { c } else { ' ' }).collect();
    lowered.split_whitespace().filter(|w| !matches!(*w, "a" | "an" | "the")).collect::<Vec<_>>().join(" ")
}

pub fn exact_match(prediction: &str, answer: &str) -> bool {
    normalize(prediction) == normalize(answer)
}

pub fn token_f1(prediction: &str, answer: &str) -> f64 {
    let predicted = normalize(prediction);
    let expected = normalize(answer);
    let predicted: Vec<&str> = predicted.split_whitespace().collect();
    let expected: Vec<&str> = expected.split_whitespace().collect();
    if predicted.is_empty() || expected.is_empty() {
        return f64::from(u8::from(predicted == expected));
    }
    let mut remaining = expected.clone();
    let mut common = 0usize;
    for word in &predicted {
        if let Some(i) = remaining.iter().position(|w| w == word) {
            remaining.swap_remove(i);
            common += 1;
        }
    }
    if common == 0 {
        return 0.0;
    }
    let precision = common as f64 / predicted.len() as f64;
    let recall = common as f64 / expected.len() as f64;
    2.0 * precision * recall / (precision + recall)
}

/// The normalised answer appears in the normalised prediction (on word boundaries).
pub fn contained(prediction: &str, answer: &str) -> bool {
    let answer = normalize(answer);
    !answer.is_empty() && format!(" {} ", normalize(prediction)).contains(&format!(" {answer} "))
}

pub fn score(prediction: &str, answers: &[String]) -> (f64, f64, f64) {
    let best = |f: &dyn Fn(&str) -> f64| answers.iter().map(|a| f(a)).fold(0.0, f64::max);
    (
        best(&|a| f64::from(u8::from(exact_match(prediction, a)))),
        best(&|a| token_f1(prediction, a)),
        best(&|a| f64::from(u8::from(contained(prediction, a)))),
    )
}

pub fn read_questions(path: &Path) -> Result<Vec<Question>> {
    let name = path.display().to_string();
    let file = std::fs::File::open(path).map_err(|e| Error::input(&name, e))?;
    let mut questions = Vec::new();
    for (index, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| Error::input(&name, e))?;
        if line.trim().is_empty() {
            continue;
        }
        let question: Question = serde_json::from_str(&line).map_err(|e| {
            Error::input(
                format!("{name}:{}", index + 1),
                format!("expected {{\"doc_id\", \"question\", \"answers\": [...]}}: {e}"),
            )
        })?;
        questions.push(question);
    }
    Ok(questions)
}

/// Answers every question; a failing question is scored 0 and recorded, the run goes on.
pub fn run(
    engine: &Engine,
    store: &Reader<'_>,
    questions: &[Question],
    options: &AskOptions,
    mut out: Option<&mut dyn Write>,
    mut on_done: impl FnMut(usize),
) -> Result<(Vec<Scored>, EvalSummary)> {
    let mut results = Vec::with_capacity(questions.len());
    for (index, question) in questions.iter().enumerate() {
        let answer: Result<Answer> = engine.ask(store, &question.doc_id, &question.question, options);
        let scored = match answer {
            Ok(answer) => {
                let (exact_match, f1, contained) = score(&answer.answer, &question.answers);
                Scored {
                    id: question.id.clone(),
                    doc_id: question.doc_id.clone(),
                    question: question.question.clone(),
                    answers: question.answers.clone(),
                    prediction: answer.answer,
                    exact_match,
                    f1,
                    contained,
                    prompt_tokens: answer.prompt_tokens,
                    chunks: answer.chunks,
                    evidence: answer.evidence,
                    replaced_answer: answer.replaced_answer,
                    second_hop: answer.second_hop,
                    refocused: answer.refocused,
                    compared: answer.compared,
                    ttft_ms: answer.ttft_ms,
                    total_ms: answer.total_ms,
                    error: None,
                }
            }
            Err(e) => Scored {
                id: question.id.clone(),
                doc_id: question.doc_id.clone(),
                question: question.question.clone(),
                answers: question.answers.clone(),
                prediction: String::new(),
                exact_match: 0.0,
                f1: 0.0,
                contained: 0.0,
                prompt_tokens: 0,
                chunks: Vec::new(),
                evidence: None,
                replaced_answer: None,
                second_hop: false,
                refocused: false,
                compared: false,
                ttft_ms: 0.0,
                total_ms: 0.0,
                error: Some(e.to_string()),
            },
        };
        if let Some(out) = out.as_deref_mut() {
            let line = serde_json::to_string(&scored).expect("scored results serialise");
            writeln!(out, "{line}").map_err(|e| Error::io("writing eval results", e))?;
        }
        results.push(scored);
        on_done(index + 1);
    }
    let summary = summarize(&options.mode.name(), &results);
    Ok((results, summary))
}

pub fn summarize(mode: &str, results: &[Scored]) -> EvalSummary {
    let n = results.len().max(1) as f64;
    let ok: Vec<&Scored> = results.iter().filter(|r| r.error.is_none()).collect();
    let mut ttft: Vec<f64> = ok.iter().map(|r| r.ttft_ms).collect();
    let mut total: Vec<f64> = ok.iter().map(|r| r.total_ms).collect();
    ttft.sort_by(f64::total_cmp);
    total.sort_by(f64::total_cmp);
    EvalSummary {
        mode: mode.to_string(),
        questions: results.len(),
        errors: results.len() - ok.len(),
        exact_match: results.iter().map(|r| r.exact_match).sum::<f64>() / n,
        f1: results.iter().map(|r| r.f1).sum::<f64>() / n,
        contained: results.iter().map(|r| r.contained).sum::<f64>() / n,
        mean_prompt_tokens: ok.iter().map(|r| r.prompt_tokens as f64).sum::<f64>() / ok.len().max(1) as f64,
        with_evidence: results.iter().filter(|r| r.evidence.is_some()).count() as f64 / n,
        f1_with_evidence: mean_f1(results.iter().filter(|r| r.evidence.is_some())),
        f1_without_evidence: mean_f1(results.iter().filter(|r| r.evidence.is_none())),
        replaced: results.iter().filter(|r| r.replaced_answer.is_some()).count() as f64 / n,
        f1_replaced: mean_f1(results.iter().filter(|r| r.replaced_answer.is_some())),
        second_hop: results.iter().filter(|r| r.second_hop).count() as f64 / n,
        f1_second_hop: mean_f1(results.iter().filter(|r| r.second_hop)),
        refocused: results.iter().filter(|r| r.refocused).count() as f64 / n,
        f1_refocused: mean_f1(results.iter().filter(|r| r.refocused)),
        compared: results.iter().filter(|r| r.compared).count() as f64 / n,
        f1_compared: mean_f1(results.iter().filter(|r| r.compared)),
        ttft_ms_p50: percentile(&ttft, 0.5),
        ttft_ms_p90: percentile(&ttft, 0.9),
        total_ms_p50: percentile(&total, 0.5),
        total_ms_p90: percentile(&total, 0.9),
        total_ms_p99: percentile(&total, 0.99),
    }
}

fn mean_f1<'a>(results: impl Iterator<Item = &'a Scored>) -> f64 {
    let (sum, count) = results.fold((0.0, 0), |(sum, count), r| (sum + r.f1, count + 1));
    if count == 0 {
        0.0
    } else {
        sum / count as f64
    }
}

/// Percentile `q` (0..=1) of sorted values, interpolated linearly between the two nearest ranks (0
/// when empty): the median of an even count is the mean of the middle two. The one definition the
/// project uses; `bench/metrics.py` is its Python twin (numpy's and `statistics.median`'s too).
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted {
        [] => 0.0,
        [only] => *only,
        _ => {
            let position = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
            let (below, fraction) = (position.floor() as usize, position.fract());
            let above = (below + 1).min(sorted.len() - 1);
            sorted[below] + (sorted[above] - sorted[below]) * fraction
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics() {
        assert!(exact_match("The Eiffel Tower.", "eiffel tower"));
        assert!(!exact_match("Paris, France", "Paris"));
        assert!(contained("It is Paris, France.", "paris"));
        assert!(!contained("Parisian", "paris"));
        assert!((token_f1("Paris France", "Paris") - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(token_f1("London", "Paris"), 0.0);
        assert_eq!(score("in 1990", &["1990".into(), "nineteen ninety".into()]), (0.0, 2.0 / 3.0, 1.0));
    }

    fn scored(f1: f64, evidence: bool) -> Scored {
        Scored {
            id: None,
            doc_id: "d".into(),
            question: "q".into(),
            answers: vec!["a".into()],
            prediction: "p".into(),
            exact_match: 0.0,
            f1,
            contained: 0.0,
            prompt_tokens: 10,
            chunks: Vec::new(),
            evidence: evidence.then(|| Evidence { chunk: 0, read: true, sentence: "s".into() }),
            replaced_answer: None,
            second_hop: false,
            refocused: false,
            compared: false,
            ttft_ms: 1.0,
            total_ms: 2.0,
            error: None,
        }
    }

    #[test]
    fn the_summary_splits_f1_by_evidence() {
        let summary =
            summarize("rag", &[scored(1.0, true), scored(0.5, true), scored(0.25, false), scored(0.0, false)]);
        assert_eq!((summary.with_evidence, summary.f1_with_evidence, summary.f1_without_evidence), (0.5, 0.75, 0.125));
        let none = summarize("rag", &[scored(0.5, false)]);
        assert_eq!((none.with_evidence, none.f1_with_evidence, none.f1_without_evidence), (0.0, 0.0, 0.5));
        assert_eq!((none.replaced, none.f1_replaced), (0.0, 0.0));
    }

    #[test]
    fn the_summary_counts_copied_answers_apart() {
        let copied = Scored { replaced_answer: Some("Riga".into()), ..scored(0.5, true) };
        let summary = summarize("rag", &[copied, scored(1.0, true), scored(0.0, false), scored(0.0, false)]);
        assert_eq!((summary.replaced, summary.f1_replaced), (0.25, 0.5));
        assert_eq!((summary.second_hop, summary.f1_second_hop), (0.0, 0.0));
    }

    #[test]
    fn the_summary_counts_second_hops_apart() {
        let reread = |f1| Scored { second_hop: true, ..scored(f1, true) };
        let summary = summarize("hybrid", &[reread(1.0), reread(0.0), scored(0.5, true), scored(0.5, false)]);
        assert_eq!((summary.second_hop, summary.f1_second_hop), (0.5, 0.5));
    }

    #[test]
    fn percentiles() {
        let values = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(percentile(&values, 0.5), 2.5);
        assert!((percentile(&values, 0.99) - 3.97).abs() < 1e-12);
        assert_eq!(percentile(&values, 0.0), 1.0);
        assert_eq!(percentile(&values, 1.0), 4.0);
        assert_eq!(percentile(&[1.0, 5.0, 9.0], 0.5), 5.0);
        assert_eq!(percentile(&[7.0], 0.9), 7.0);
        assert_eq!(percentile(&[], 0.5), 0.0);
    }
}
