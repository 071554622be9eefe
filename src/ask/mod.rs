//! Answering a question about a stored document. One code path; the modes differ only in the
//! context placed in the prompt (see `onnx/prompt.json` for the layout):
//! - `compressed`: every chunk as one soft token (E2LLM);
//! - `hybrid`: the top-k chunks' raw text (as in rag), and the other chunks as soft tokens;
//! - `rag`: the top-k chunks' raw text only;
//! - `full`: the raw document, cut to the decoder's window;
//! - `rcc`: the chosen chunks' RCC memory in the KV cache in front of the prompt (src/rcc.rs);
//! - `question-only`: no document (a baseline for evaluation).

use std::sync::Arc;
use std::time::{Duration, Instant};

mod evidence;
mod options;
mod prompt;

pub use evidence::Evidence;
pub use options::{
    AskOptions, Mode, Retrieval, DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_SOFT_TOKENS, DEFAULT_MEMORY_CHUNKS,
    DEFAULT_MIN_RELEVANCE, DEFAULT_RETRIEVAL, DEFAULT_TOP_K, MAX_NEW_TOKENS_LIMIT,
};
pub use prompt::{Prompt, PromptPart};

use crate::decode::{yes_or_no, GenerateOptions, Generation, Piece};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::lexical;
use crate::rcc::{Memory, MemoryShape};
use crate::store::{DocumentRow, Reader, StoredChunks};
use crate::vector;
use prompt::{chunks_within, cut_at_char_boundary, describe, fit, layout, Context};

/// Questions are cut to this many decoder tokens, so a huge question cannot take the window.
pub const MAX_QUESTION_TOKENS: usize = 512;
/// Question text beyond this many bytes is dropped before tokenising (~4,000 tokens of English: far
/// more than the 512 kept).
const MAX_QUESTION_BYTES: usize = 16 * 1024;
/// Window room kept for the question whatever its length, so the document's cut is the same for
/// all questions up to this many tokens.
pub const QUESTION_RESERVE: usize = 128;
/// Rank-fusion weights of the second hop's retrieval (`AskOptions::second_hop`): the hop's BM25
/// ranking 2, the question's BM25 ranking 1, its cosine ranking 0.5 (fixed before measuring).
const SECOND_HOP_WEIGHT: f64 = 2.0;
const SECOND_HOP_DENSE_WEIGHT: f64 = 0.5;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Answer {
    pub answer: String,
    /// The sentence of the document that holds the answer's words (chunks the prompt read first), for
    /// the user to check it against; absent when the answer quotes nothing of the document (a yes/no,
    /// a name the decoder made up, a paraphrase). Not for question-only, which reads no document.
    pub evidence: Option<Evidence>,
    /// The decoder's own answer when the extractive fallback replaced it (`extractive_fallback`): one of
    /// its words is no word of the text the prompt read, so `answer` is a span copied from that text
    /// instead. A sign for the user that the answer is the text's likeliest span, not the decoder's
    /// free reading.
    pub replaced_answer: Option<String>,
    /// The first reading's answer was weak (no evidence in the text read, or replaced by the extractive
    /// fallback) and this one comes from a second retrieval hop (`AskOptions::second_hop`); `chunks` are
    /// the second reading's, and `ttft_ms` runs to the second answer's first token (both readings).
    pub second_hop: bool,
    pub mode: Mode,
    pub doc_id: String,
    /// Decoder input positions (text tokens + soft tokens).
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub ttft_ms: f64,
    pub total_ms: f64,
    /// Time this call spent loading models (0 once they are loaded in this process); not
    /// included in `ttft_ms` and `total_ms`.
    pub load_ms: f64,
    /// Chunks whose raw text was placed in the prompt (rag, hybrid) or whose memory was read (rcc), in
    /// document order.
    pub chunks: Vec<usize>,
    /// True when the context was cut to fit the decoder's window.
    pub truncated: bool,
    /// The document part of the prompt was already prefilled by an earlier question in this
    /// process (prefix KV cache): only the question was prefilled.
    pub prefix_cache_hit: bool,
    pub provider: String,
    /// The decoder's weights and compute: fp32, fp16 or quantized (`--precision`).
    pub precision: String,
    /// The prompt as the decoder read it, piece by piece (`show_prompt`): what training must match.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prompt: Option<Vec<PromptPart>>,
}

/// One reading of a question: what `Engine::read` generated and from which chunks.
struct Reading {
    generation: Generation,
    evidence: Option<Evidence>,
    selected: Vec<usize>,
    truncated: bool,
    shown: Option<Vec<PromptPart>>,
    ttft: Duration,
}

impl Reading {
    /// An answer the text read does not support: it quotes nothing of it (a bare yes or no excepted),
    /// or the extractive fallback replaced the decoder's own answer.
    fn weak(&self) -> bool {
        self.generation.replaced.is_some() || (self.evidence.is_none() && !yes_or_no(&self.generation.text))
    }
}

impl Engine {
    /// Answers `question` about stored document `doc_id`.
    pub fn ask(&self, store: &Reader<'_>, doc_id: &str, question: &str, options: &AskOptions) -> Result<Answer> {
        options.validate()?;
        // Models load once per process; the first call's loading is reported apart from the
        // answer's latency.
        let loading = Instant::now();
        let decoder = self.decoder()?;
        if options.mode.retrieves() && options.retrieval != Retrieval::Lexical {
            self.encoder()?;
        }
        if options.mode.uses_adapter() {
            self.adapter(&options.mode.name())?;
        }
        let load_ms = loading.elapsed().as_secs_f64() * 1e3;
        let started = Instant::now();
        let document = store.document(doc_id)?;
        let template = &self.manifest().prompt;
        let mode = options.mode;

        // Cut the text before tokenising: a huge question costs no more than one at the token limit.
        let question = cut_at_char_boundary(question, MAX_QUESTION_BYTES);
        let mut question_ids = decoder.tokenize(question)?;
        question_ids.truncate(MAX_QUESTION_TOKENS);
        let frame = decoder.tokenize(&template.prefix)?.len()
            + decoder.tokenize(&template.context_prefix)?.len()
            + decoder.tokenize(&template.context_suffix)?.len()
            + decoder.tokenize(&format!("{}{}", template.question_prefix, template.suffix))?.len()
            + 2; // slack for piece-wise tokenisation, kept as released so that documents are cut where they were
        let window = decoder.context_length();
        // The document's share does not depend on the question's length (up to QUESTION_RESERVE
        // tokens), so every question about a document sees the same prompt prefix (prefix cache).
        let question_room = question_ids.len().max(QUESTION_RESERVE);
        let budget = window.saturating_sub(options.max_new_tokens + frame + question_room);
        if budget == 0 && mode != Mode::QuestionOnly {
            return Err(Error::Invalid(format!(
                "max_new_tokens {} leaves no room for the document in the decoder's {window}-token window",
                options.max_new_tokens
            )));
        }

        // Counted in the time to the first token: the question alone, prefilled for the yes/no prior
        // (not for extractive decoding, whose first token the prior does not choose).
        let calibrate = options.calibrate_yes_no && !options.extractive && mode != Mode::QuestionOnly;
        let yes_no_prior = if calibrate && asks_yes_no(question) {
            Some(decoder.next_log_probs(&layout(template, None, question_ids.clone()).pieces())?)
        } else {
            None
        };
        let context = match mode {
            Mode::QuestionOnly => None,
            _ => Some(self.context(&document, store, question, options, budget, None)?),
        };
        let best = context.as_ref().and_then(|c| c.best);
        let mut reading = self.read(context, &question_ids, question, options, yes_no_prior.clone(), started)?;
        let mut second_hop = false;
        if let Some(best) = best.filter(|_| options.second_hop_applies() && reading.weak()) {
            let context = self.context(&document, store, question, options, budget, Some(best))?;
            if context.selected != reading.selected {
                reading = self.read(Some(context), &question_ids, question, options, yes_no_prior, started)?;
                second_hop = true;
            }
        }
        let generation = reading.generation;
        Ok(Answer {
            evidence: reading.evidence,
            answer: generation.text,
            replaced_answer: generation.replaced,
            second_hop,
            mode,
            doc_id: doc_id.to_string(),
            prompt_tokens: generation.prompt_tokens,
            generated_tokens: generation.token_ids.len(),
            ttft_ms: reading.ttft.as_secs_f64() * 1e3,
            total_ms: started.elapsed().as_secs_f64() * 1e3,
            load_ms,
            chunks: reading.selected,
            truncated: reading.truncated,
            prefix_cache_hit: generation.prefix_cache_hit,
            provider: decoder.provider().to_string(),
            precision: decoder.precision().to_string(),
            prompt: reading.shown,
        })
    }

    /// One reading of the question: the prompt from `context` (none for question-only), the answer
    /// generated from it and where its evidence is. `ttft` counts from `started`.
    fn read(
        &self,
        mut context: Option<Context>,
        question_ids: &[u32],
        question: &str,
        options: &AskOptions,
        yes_no_prior: Option<Vec<f32>>,
        started: Instant,
    ) -> Result<Reading> {
        let decoder = self.decoder()?;
        let template = &self.manifest().prompt;
        let mode = options.mode;
        let (selected, truncated, text) = context
            .as_mut()
            .map(|c| (std::mem::take(&mut c.selected), c.truncated, std::mem::take(&mut c.text)))
            .unwrap_or_default();
        let (texts, read) = context
            .as_mut()
            .map(|c| (std::mem::take(&mut c.chunk_texts), std::mem::take(&mut c.read)))
            .unwrap_or_default();
        let prompt = layout(template, context, question_ids.to_vec());
        let shown = if options.show_prompt { Some(describe(&decoder, &prompt.pieces())?) } else { None };
        let before_generation = started.elapsed();
        let mut generate = GenerateOptions::new(options.max_new_tokens);
        generate.stop_at_newline = options.stop_at_newline;
        generate.whole_numbers = options.whole_numbers;
        generate.whole_spans = options.whole_spans;
        generate.yes_no_prior = yes_no_prior;
        generate.prompt_text = (options.rules_read_prompt_text() && !text.is_empty()).then(|| text.clone());
        generate.copy_from = options.extractive.then_some(text);
        let avoid = options.avoid_repeating && mode.reads_text() && !offers_choice(question);
        generate.avoid_repeating = avoid.then(|| question.to_string());
        generate.extractive_fallback = options.extractive_fallback_applies();
        let generation = if options.prefix_cache {
            decoder.generate_with_prefix(&prompt.shared, &prompt.per_question, &generate)?
        } else {
            decoder.generate(&prompt.pieces(), &generate)?
        };
        Ok(Reading {
            evidence: evidence::find(&generation.text, &texts, &read),
            ttft: before_generation + generation.time_to_first_token,
            generation,
            selected,
            truncated,
            shown,
        })
    }

    /// The document's part of the prompt in `options.mode` (any mode but question-only), within
    /// `budget` positions: the one place that decides what each mode reads.
    fn context(
        &self,
        document: &DocumentRow,
        store: &Reader<'_>,
        question: &str,
        options: &AskOptions,
        mut budget: usize,
        hop_from: Option<usize>,
    ) -> Result<Context> {
        let decoder = self.decoder()?;
        let template = &self.manifest().prompt;
        let chunks = store.chunks(document)?;
        let mut context = Context::default();
        if options.mode.retrieves_text() {
            let mut order = self.retrieve(document, &chunks, question, options, store, hop_from)?;
            context.best = order.first().copied();
            order.sort_unstable();
            context.selected = order;
        }
        if options.mode.uses_adapter() {
            let adapter = self.adapter(&options.mode.name())?;
            check_encoder(document, &adapter.spec().encoder_fingerprint, store)?;
            let normalized = self.manifest().encoder.normalized;
            // hybrid: each chunk once, as text (the retrieved ones) or as a soft token (the rest).
            let rest: Vec<f32> = chunks
                .vectors
                .chunks(chunks.dim)
                .enumerate()
                .filter(|(i, _)| !context.selected.contains(i))
                .flat_map(|(_, row)| row.iter().copied())
                .collect();
            let soft = vector::pool_rows(&rest, chunks.dim, options.max_soft_tokens, normalized);
            let rows = (soft.len() / chunks.dim).min(budget);
            context.truncated |= rows < soft.len() / chunks.dim;
            budget -= rows;
            if rows > 0 {
                let soft = Piece::Embeds(adapter.adapt(&soft[..rows * chunks.dim])?);
                // compressed: the same for every question (prefix cache); hybrid: not the retrieved chunks.
                match options.mode {
                    Mode::Hybrid => context.per_question.push(soft),
                    _ => context.fixed.push(soft),
                }
            }
        }
        if options.mode == Mode::Rcc {
            context.memory = Some(self.memory(document, &chunks, question, options, store, budget, &mut context)?);
            context.read = context.selected.clone();
            context.chunk_texts = chunks.texts;
            return Ok(context);
        }
        let text = match options.mode {
            Mode::Rag | Mode::Hybrid => {
                let texts: Vec<&str> = context.selected.iter().map(|&i| chunks.texts[i].trim()).collect();
                let separator = if options.mode == Mode::Hybrid { template.chunk_separator.as_str() } else { "" };
                Some(format!("{separator}{}", texts.join(&template.chunk_separator)))
            }
            Mode::Full => Some(chunks.texts.concat()),
            Mode::Compressed | Mode::QuestionOnly | Mode::Rcc => None,
        };
        if let Some(text) = text {
            let (ids, cut) = fit(decoder.tokenize(&text)?, budget);
            context.truncated |= cut;
            let wants_text = options.extractive || options.rules_read_prompt_text();
            let cut_full = options.mode == Mode::Full && cut;
            let decoded = if wants_text || cut_full { decoder.detokenize(&ids)? } else { String::new() };
            context.read = match options.mode {
                Mode::Full if cut => chunks_within(&chunks.texts, decoded.len()),
                Mode::Full => (0..chunks.texts.len()).collect(),
                _ => context.selected.clone(),
            };
            if wants_text {
                context.text = decoded;
            }
            // Retrieved text depends on the question; the full document does not.
            match options.mode {
                Mode::Full => context.fixed.push(Piece::Tokens(ids)),
                _ => context.per_question.push(Piece::Tokens(ids)),
            }
        }
        context.chunk_texts = chunks.texts;
        Ok(context)
    }

    /// `rcc`: the memory of the document's chunks (all up to `memory_chunks`, else that many chosen by
    /// retrieval), in document order, placed at the start of the KV cache; cut to `budget` positions.
    #[allow(clippy::too_many_arguments)]
    fn memory(
        &self,
        document: &DocumentRow,
        chunks: &StoredChunks,
        question: &str,
        options: &AskOptions,
        store: &Reader<'_>,
        budget: usize,
        context: &mut Context,
    ) -> Result<Piece> {
        let spec = self.manifest().rcc.as_ref().ok_or_else(|| Error::RccMissing {
            hint: "train it (`make train-rcc`) and re-export (`make setup`)".into(),
        })?;
        let chosen: Vec<usize> = if chunks.texts.len() <= options.memory_chunks {
            (0..chunks.texts.len()).collect()
        } else {
            let mut order = self.retrieve(document, chunks, question, options, store, None)?;
            order.sort_unstable();
            order
        };
        let shape = MemoryShape::of(&self.manifest().decoder);
        let mut parts = Vec::with_capacity(chosen.len());
        let mut used = 0;
        for (seq, (slots, blob)) in chosen.iter().zip(store.memory(document, &chosen, &spec.fingerprint)?) {
            if used + slots > budget {
                context.truncated = true;
                break;
            }
            used += slots;
            let memory = Memory::from_blob(&blob, slots, shape)
                .map_err(|e| Error::db(store.path(), format!("document `{}` chunk {seq}: {e}", document.doc_id)))?;
            parts.push(memory);
            context.selected.push(*seq);
        }
        Ok(Piece::Memory(Arc::new(Memory::concat(&parts, shape).placed(&spec.rope_inv_freq))))
    }

    /// The chunks that best match the question under `options.retrieval`, as many as the mode reads,
    /// less those below its relevance floor (see `AskOptions::retrieval_budget`,
    /// `lexical::keep_relevant`), best first. With `hop_from` (the first reading's best chunk), the second
    /// hop (`AskOptions::second_hop`): a third ranking, BM25 of the question with that chunk's words
    /// (`lexical::second_hop`), fused with the others and weighted above them.
    fn retrieve(
        &self,
        document: &DocumentRow,
        chunks: &StoredChunks,
        question: &str,
        options: &AskOptions,
        store: &Reader<'_>,
        hop_from: Option<usize>,
    ) -> Result<Vec<usize>> {
        let dense = || -> Result<Vec<f64>> {
            let encoder = self.encoder()?;
            check_encoder(document, encoder.fingerprint(), store)?;
            let query = encoder.embed(&[question], 1)?;
            Ok(chunks.vectors.chunks_exact(chunks.dim).map(|row| vector::dot(query.row(0), row) as f64).collect())
        };
        let mut scorings = match options.retrieval {
            Retrieval::Dense => vec![dense()?],
            Retrieval::Lexical => vec![lexical::bm25(question, &chunks.texts)],
            Retrieval::Fused => vec![dense()?, lexical::bm25(question, &chunks.texts)],
        };
        let (top_k, min_relevance) = options.retrieval_budget();
        let (mut order, floor) = match hop_from {
            None => {
                let order = match scorings.as_slice() {
                    [one] => lexical::best_first(one),
                    several => lexical::best_first(&lexical::fuse(several)),
                };
                (order, scorings)
            }
            Some(best) => {
                let hop = lexical::second_hop(question, &chunks.texts, best);
                // The relevance floor judges by the question's scorings, and by the hop's with the best
                // chunk's own score left out (it matches its own words most, and would raise the bar for
                // all others).
                let mut floor = scorings.clone();
                let mut judged = hop.clone();
                judged[best] = 0.0;
                floor.push(judged);
                let mut weights = vec![1.0; scorings.len()];
                if options.retrieval == Retrieval::Fused {
                    weights[0] = SECOND_HOP_DENSE_WEIGHT;
                }
                weights.push(SECOND_HOP_WEIGHT);
                scorings.push(hop);
                (lexical::best_first(&lexical::fuse_weighted(&scorings, &weights)), floor)
            }
        };
        order.truncate(top_k);
        if min_relevance > 0.0 {
            order = lexical::keep_relevant(&floor, &order, min_relevance);
        }
        Ok(order)
    }
}

/// A question that opens with an auxiliary verb and offers no choice ("Are A and B both ...?"): one
/// answered yes or no. English only; other questions are never calibrated (`calibrate_yes_no`).
fn asks_yes_no(question: &str) -> bool {
    const OPENERS: [&str; 18] = [
        "is", "are", "was", "were", "do", "does", "did", "has", "have", "had", "can", "could", "will", "would",
        "should", "may", "might", "must",
    ];
    let first = question.split(|c: char| !c.is_alphanumeric()).find(|w| !w.is_empty()).unwrap_or("");
    OPENERS.iter().any(|o| first.eq_ignore_ascii_case(o)) && !offers_choice(question)
}

/// True when the question offers alternatives ("Who is older, A or B?"): its answer is expected to
/// repeat words of the question.
fn offers_choice(question: &str) -> bool {
    question.split(|c: char| !c.is_alphanumeric()).any(|word| word.eq_ignore_ascii_case("or"))
}

fn check_encoder(document: &DocumentRow, loaded: &str, store: &Reader<'_>) -> Result<()> {
    if document.encoder_fingerprint != loaded {
        return Err(Error::EncoderMismatch {
            path: store.path().to_string(),
            stored: document.encoder_fingerprint.clone(),
            loaded: loaded.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::offers_choice;

    #[test]
    fn a_question_offers_a_choice_when_it_has_or_as_a_word() {
        assert!(offers_choice("Who is older, Ivan Foster or Ian Paisley?"));
        assert!(offers_choice("Which came first: Muppet Treasure Island OR Million Dollar Arm"));
        assert!(!offers_choice("Which former mill town is near Rivington Hall Barn?"));
        assert!(!offers_choice("Which organ is in Oregon?"));
    }
}
