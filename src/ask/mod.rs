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

mod choice;
mod evidence;
mod options;
mod prompt;

use choice::{by_years, offers_choice, whole_option};
pub use evidence::Evidence;
use evidence::{LikeFact, Match};
pub use options::{
    AskOptions, Mode, Retrieval, DEFAULT_MAX_NEW_TOKENS, DEFAULT_MAX_SOFT_TOKENS, DEFAULT_MEMORY_CHUNKS,
    DEFAULT_MIN_RELEVANCE, DEFAULT_RETRIEVAL, DEFAULT_TOP_K, MAX_NEW_TOKENS_LIMIT,
};
pub use prompt::{Prompt, PromptPart};

use crate::decode::{repeats, words, yes_or_no, GenerateOptions, Generation, Piece};
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
/// Question terms the first answer's evidence must hold for `gather` to look for its like facts: one
/// shared word ("all", "keep") makes a sentence of the speech around a needle look like a fact asked for
/// (a list of the speech's numbers). Fixed on our own needles, not tuned.
const GATHER_MIN_TERMS: usize = 2;
/// Like facts `gather` reads at most beyond the first answer's.
const GATHER_MAX_READINGS: usize = 8;
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
    /// The answer read first stood in a sentence parallel to another of the text read that holds more
    /// of the question's words (like facts of different subjects: a question about the lighthouse of
    /// Mombasa answered with the steps of Hobart's), and this one was read from that sentence's chunk
    /// alone (`AskOptions::refocus`); `chunks` is that chunk, and `ttft_ms` runs through every reading.
    pub refocused: bool,
    /// For a question that asks for all of something ("What are all the ledger numbers ...?"), answered
    /// from one of several like facts in the document: the answers read from each such fact's chunk
    /// alone (`AskOptions::gather`), the first reading's first; `answer` joins them with ", ". Empty
    /// otherwise.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub gathered: Vec<String>,
    /// The question asks which of two options it names came first or last, and the answer is the one
    /// whose first year in the document is the earlier or the later (`AskOptions::compare_years`);
    /// `evidence` is the sentence that gives its year.
    pub compared: bool,
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
    selected: Vec<usize>,
    /// Chunks whose text the decoder read whole (`Context::read`): where evidence is looked for first.
    read: Vec<usize>,
    truncated: bool,
    shown: Option<Vec<PromptPart>>,
    ttft: Duration,
}

/// An answer the text read does not support, which the second hop reads again for: the extractive
/// fallback replaced the decoder's own answer; or it only repeats words of a question that offers no
/// choice (after `avoid_repeating`'s retries); or it has no `evidence` (`evidence::find`: no sentence of
/// the document quotes it, none of the text read holds its words) and is not a bare yes or no.
fn weak(answer: &str, replaced: bool, evidence: Option<&Evidence>, question: &str) -> bool {
    let echoes = !offers_choice(question) && repeats(answer, &words(question));
    replaced || echoes || (evidence.is_none() && !yes_or_no(answer))
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
        let source = match mode {
            Mode::QuestionOnly => None,
            _ => Some(self.source(&document, store, question, options)?),
        };
        let context = match &source {
            Some(source) => Some(self.context(source, store, question, options, budget, Pick::Retrieved)?),
            None => None,
        };
        let best = context.as_ref().and_then(|c| c.best);
        // Evidence is looked for in the document's chunks (none for question-only).
        let texts = source.as_ref().map_or(&[][..], |s| s.chunks.texts.as_slice());
        let find = |reading: &Reading| evidence::find(&reading.generation.text, texts, &reading.read);
        let mut reading = self.read(context, &question_ids, question, options, yes_no_prior.clone(), started)?;
        let mut evidence = find(&reading);
        let mut second_hop = false;
        let generation = &reading.generation;
        let first_weak = weak(&generation.text, generation.replaced.is_some(), evidence.as_ref(), question);
        if let Some((best, source)) = best.filter(|_| options.second_hop_applies() && first_weak).zip(source.as_ref()) {
            let context = self.context(source, store, question, options, budget, Pick::SecondHop(best))?;
            if context.selected != reading.selected {
                reading = self.read(Some(context), &question_ids, question, options, yes_no_prior.clone(), started)?;
                evidence = find(&reading);
                second_hop = true;
            }
        }
        // One more reading of one chunk, or one sentence of it, alone (refocus, gather); the evidence of
        // its answer where that chunk holds it.
        let read_alone =
            |source: &Source<'_>, chunk: usize, sentence: Option<&str>| -> Result<(Reading, Option<Evidence>)> {
                let pick = sentence.map_or(Pick::Only(chunk), |sentence| Pick::Sentence(chunk, sentence));
                let context = self.context(source, store, question, options, budget, pick)?;
                let reading =
                    self.read(Some(context), &question_ids, question, options, yes_no_prior.clone(), started)?;
                let found = find(&reading).filter(|e| e.chunk == chunk && e.read);
                Ok((reading, found))
            };
        // The answer stands in one of several like facts, and another read matches the question better:
        // read that one's chunk alone, and keep its answer where that chunk holds it.
        let mut refocused = false;
        let parallel = match (&evidence, &source) {
            (Some(found), Some(source)) if options.refocus_applies() && found.read && reading.read.len() > 1 => {
                let facts = evidence::like_facts(found, &reading.generation.text, question, texts, &reading.read);
                evidence::parallel(&facts).map(|chunk| (chunk, source))
            }
            _ => None,
        };
        if let Some((chunk, source)) = parallel {
            if let (focused, Some(found)) = read_alone(source, chunk, None)? {
                (reading, evidence, refocused) = (focused, Some(found), true);
            }
        }
        // A question that asks for all of something: the like facts of the first answer's about what it
        // asks (the same subject, or another it names) are each read alone, and the answers join. They are
        // looked for in the whole document (the text read first): retrieval reads a few chunks, and the
        // question asks for every one.
        let gathered = match (&evidence, &source) {
            (Some(found), Some(source))
                if options.gather_applies()
                    && found.read
                    && asks_for_all(question)
                    && evidence::held(&found.sentence, question) >= GATHER_MIN_TERMS =>
            {
                let everywhere: Vec<usize> = evidence::read_first(&reading.read, texts.len()).collect();
                let facts = evidence::like_facts(found, &reading.generation.text, question, texts, &everywhere);
                // Each fact's chunk is read alone; where the answer is not that fact's (the chunk holds
                // another), the fact's sentence alone.
                gather(&reading.generation.text, &facts, |fact| {
                    for sentence in [None, Some(fact.sentence.as_str())] {
                        if let (other, Some(_)) = read_alone(source, fact.chunk, sentence)? {
                            let answer = other.generation.text;
                            if words(&fact.sentence).contains(&words(&answer)) {
                                return Ok(Some(answer));
                            }
                        }
                    }
                    Ok(None)
                })?
            }
            _ => Vec::new(),
        };
        let generation = reading.generation;
        // Which of two options came first or last: the years the document gives them decide. Else, part
        // of a name the question offers as an option is given whole, as the question writes it. (Not for
        // a gathered answer: it joins several.)
        let single = gathered.is_empty();
        let by_year =
            (single && options.compare_years_applies()).then(|| by_years(question, texts, &reading.read)).flatten();
        let compared = by_year.is_some();
        let whole = match by_year {
            Some((option, found)) => {
                evidence = Some(found);
                Some(option)
            }
            None => {
                let whole = (single && options.whole_spans).then(|| whole_option(&generation.text, question)).flatten();
                if let Some(whole) = &whole {
                    evidence = evidence::find(whole, texts, &reading.read);
                }
                whole
            }
        };
        Ok(Answer {
            evidence,
            answer: match whole {
                Some(whole) => whole,
                None if !single => gathered.join(", "),
                None => generation.text,
            },
            gathered,
            compared,
            replaced_answer: generation.replaced,
            second_hop,
            refocused,
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

    /// One reading of the question: the prompt from `context` (none for question-only) and the answer
    /// generated from it. `ttft` counts from `started`.
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
        let read = context.as_mut().map(|c| std::mem::take(&mut c.read)).unwrap_or_default();
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
            ttft: before_generation + generation.time_to_first_token,
            generation,
            selected,
            read,
            truncated,
            shown,
        })
    }

    /// The document's stored chunks and, in the modes that retrieve text, the question's scores of them:
    /// loaded once per question, for both readings of a second hop.
    fn source<'d>(
        &self,
        document: &'d DocumentRow,
        store: &Reader<'_>,
        question: &str,
        options: &AskOptions,
    ) -> Result<Source<'d>> {
        let chunks = store.chunks(document)?;
        let scorings = if options.mode.retrieves_text() {
            self.scorings(document, &chunks, question, options, store)?
        } else {
            Vec::new()
        };
        Ok(Source { document, chunks, scorings })
    }

    /// The document's part of the prompt in `options.mode` (any mode but question-only), within
    /// `budget` positions: the one place that decides what each mode reads.
    fn context(
        &self,
        source: &Source<'_>,
        store: &Reader<'_>,
        question: &str,
        options: &AskOptions,
        mut budget: usize,
        pick: Pick<'_>,
    ) -> Result<Context> {
        let decoder = self.decoder()?;
        let template = &self.manifest().prompt;
        let (document, chunks) = (source.document, &source.chunks);
        let mut context = Context::default();
        if options.mode.retrieves_text() {
            let mut order = match pick {
                Pick::Retrieved => retrieve(&source.scorings, &chunks.texts, question, options, None),
                Pick::SecondHop(best) => retrieve(&source.scorings, &chunks.texts, question, options, Some(best)),
                Pick::Only(chunk) | Pick::Sentence(chunk, _) => vec![chunk],
            };
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
            context.memory = Some(self.memory(document, chunks, question, options, store, budget, &mut context)?);
            context.read = context.selected.clone();
            return Ok(context);
        }
        let text = match options.mode {
            Mode::Rag | Mode::Hybrid => {
                let texts: Vec<&str> = match pick {
                    Pick::Sentence(_, sentence) => vec![sentence.trim()],
                    _ => context.selected.iter().map(|&i| chunks.texts[i].trim()).collect(),
                };
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
            let scorings = self.scorings(document, chunks, question, options, store)?;
            let mut order = retrieve(&scorings, &chunks.texts, question, options, None);
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

    /// The question's scores of the document's chunks under `options.retrieval`: cosine of the question's
    /// embedding (dense), BM25 (lexical), or both (fused).
    fn scorings(
        &self,
        document: &DocumentRow,
        chunks: &StoredChunks,
        question: &str,
        options: &AskOptions,
        store: &Reader<'_>,
    ) -> Result<Vec<Vec<f64>>> {
        let dense = || -> Result<Vec<f64>> {
            let encoder = self.encoder()?;
            check_encoder(document, encoder.fingerprint(), store)?;
            let query = encoder.embed(&[question], 1)?;
            Ok(chunks.vectors.chunks_exact(chunks.dim).map(|row| vector::dot(query.row(0), row) as f64).collect())
        };
        Ok(match options.retrieval {
            Retrieval::Dense => vec![dense()?],
            Retrieval::Lexical => vec![lexical::bm25(question, &chunks.texts)],
            Retrieval::Fused => vec![dense()?, lexical::bm25(question, &chunks.texts)],
        })
    }
}

/// Which chunks a reading's text holds (rag, hybrid).
#[derive(Debug, Clone, Copy)]
enum Pick<'s> {
    /// Those retrieval ranks first for the question.
    Retrieved,
    /// Those of the second hop from the first reading's best chunk (`AskOptions::second_hop`).
    SecondHop(usize),
    /// This one alone (`AskOptions::refocus`).
    Only(usize),
    /// This sentence of this chunk alone, in place of the chunk's text (`AskOptions::gather`: one like
    /// fact, where a chunk holds several).
    Sentence(usize, &'s str),
}

/// A document's stored chunks and the question's `scorings` of them (empty where the mode retrieves no
/// text), shared by a question's readings.
struct Source<'d> {
    document: &'d DocumentRow,
    chunks: StoredChunks,
    scorings: Vec<Vec<f64>>,
}

/// The chunks that best match the question by its `scorings` (`Engine::scorings`), as many as the mode
/// reads, less those below its relevance floor (see `AskOptions::retrieval_budget`,
/// `lexical::keep_relevant`), best first. With `hop_from` (the first reading's best chunk), the second
/// hop (`AskOptions::second_hop`): a third ranking, BM25 of the question with that chunk's words
/// (`lexical::second_hop`), fused with the others and weighted above them.
fn retrieve(
    scorings: &[Vec<f64>],
    texts: &[String],
    question: &str,
    options: &AskOptions,
    hop_from: Option<usize>,
) -> Vec<usize> {
    let (top_k, min_relevance) = options.retrieval_budget();
    let hop = hop_from.map(|best| (best, lexical::second_hop(question, texts, best)));
    let mut order = match (&hop, scorings) {
        (None, [one]) => lexical::best_first(one),
        (None, several) => lexical::best_first(&lexical::fuse(several)),
        (Some((_, hop)), _) => {
            let mut weights = vec![1.0; scorings.len()];
            if options.retrieval == Retrieval::Fused {
                weights[0] = SECOND_HOP_DENSE_WEIGHT;
            }
            weights.push(SECOND_HOP_WEIGHT);
            let mut all = scorings.to_vec();
            all.push(hop.clone());
            lexical::best_first(&lexical::fuse_weighted(&all, &weights))
        }
    };
    order.truncate(top_k);
    if min_relevance > 0.0 {
        order = match hop {
            None => lexical::keep_relevant(scorings, &order, min_relevance),
            Some((best, mut judged)) => {
                // The relevance floor judges by the question's scorings, and by the hop's with the best
                // chunk's own score left out (it matches its own words most, and would raise the bar for
                // all others).
                judged[best] = 0.0;
                let mut floor = scorings.to_vec();
                floor.push(judged);
                lexical::keep_relevant(&floor, &order, min_relevance)
            }
        };
    }
    order
}

/// The answers to a question that asks for all of something (`AskOptions::gather`): `first`, then for
/// each like fact of the same subject or of another the question names (`Match::Same`, `Match::Beside`),
/// [`GATHER_MAX_READINGS`] at most, the answer `read` gives for it (if any) unless one already gathered
/// has its words. Empty when no answer joins the first.
fn gather(
    first: &str,
    facts: &[LikeFact],
    mut read: impl FnMut(&LikeFact) -> Result<Option<String>>,
) -> Result<Vec<String>> {
    let mut answers = vec![first.to_string()];
    let asked = facts.iter().filter(|f| matches!(f.matches, Match::Same | Match::Beside));
    for fact in asked.take(GATHER_MAX_READINGS) {
        if let Some(answer) = read(fact)? {
            if !answers.iter().any(|a| words(a) == words(&answer)) {
                answers.push(answer);
            }
        }
    }
    Ok(if answers.len() > 1 { answers } else { Vec::new() })
}

/// A question that asks for all of something: "all" in lower case as a word after a space, and the
/// question opens with what, which, who, list, name, give, find or show ("What are all the ledger
/// numbers ...?", "List all the ...", "Find all ..."). English only.
fn asks_for_all(question: &str) -> bool {
    const OPENERS: [&str; 8] = ["what", "which", "who", "list", "name", "give", "find", "show"];
    let opens = question.split_whitespace().next().is_some_and(|w| {
        let w = w.trim_matches(|c: char| !c.is_alphanumeric()).to_lowercase();
        OPENERS.contains(&w.as_str())
    });
    opens && question.split_whitespace().any(|w| w.trim_end_matches(|c: char| !c.is_alphanumeric()) == "all")
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
    use super::{asks_for_all, evidence, gather, weak, LikeFact, Match};

    #[test]
    fn an_answer_is_weak_when_the_text_read_does_not_support_it() {
        let texts = vec![
            "Mr. President, Mr. Speaker, Members of the Seventy-seventh Congress: I address you.".to_string(),
            "Findlater Castle sits on a cliff. It was modelled on Roslyn Castle.".to_string(),
        ];
        let question = "Which castle was Findlater Castle modelled on?";
        let judge = |answer: &str, replaced: bool, read: &[usize]| {
            let found = evidence::find(answer, &texts, read);
            weak(answer, replaced, found.as_ref(), question)
        };
        assert!(!judge("Roslyn Castle", false, &[1]));
        // The words of one sentence read, worded otherwise.
        assert!(!judge("the Congress of the Seventy-seventh Congress", false, &[0]));
        assert!(!judge("No", false, &[0]));
        // Words of no sentence read, or of two sentences.
        assert!(judge("Edinburgh Castle", false, &[0, 1]));
        assert!(judge("Roslyn cliff", false, &[1]));
        // A copy of the text that replaced the decoder's answer, and an echo of the question.
        assert!(judge("Roslyn Castle", true, &[1]));
        assert!(judge("Findlater Castle", false, &[1]));
        // A question that offers a choice expects its words back.
        let found = evidence::find("Findlater Castle", &texts, &[1]);
        assert!(!weak("Findlater Castle", false, found.as_ref(), "Findlater Castle or Roslyn Castle?"));
    }

    #[test]
    fn gathering_reads_each_like_fact_asked_about() {
        let fact = |chunk, sentence: &str, matches| LikeFact { chunk, sentence: sentence.into(), matches, held: 2 };
        let facts = [
            fact(3, "a", Match::Same),
            fact(5, "b", Match::Other),
            fact(7, "c", Match::Same),
            fact(7, "d", Match::Beside),
            fact(9, "e", Match::Better),
            fact(1, "f", Match::Same),
        ];
        let mut asked = Vec::new();
        let answers = gather("6915", &facts, |fact| {
            asked.push(fact.sentence.clone());
            // "c" gives the first answer again; "f" gives none.
            Ok(match fact.sentence.as_str() {
                "a" => Some("2390".to_string()),
                "c" => Some("6915.".to_string()),
                "d" => Some("2500".to_string()),
                _ => None,
            })
        })
        .unwrap();
        assert_eq!(asked, ["a", "c", "d", "f"], "the facts of the same subject or of another asked about");
        assert_eq!(answers, ["6915", "2390", "2500"]);
        // No other answer joins the first: nothing gathered.
        assert!(gather("6915", &facts[1..2], |_| Ok(Some("x".into()))).unwrap().is_empty());
        assert!(gather("6915", &facts, |_| Ok(None)).unwrap().is_empty());
        // At most GATHER_MAX_READINGS facts are read.
        let many: Vec<LikeFact> = (0..20).map(|i| fact(i, "s", Match::Same)).collect();
        let mut n = 0;
        gather("0", &many, |_| {
            n += 1;
            Ok(Some(n.to_string()))
        })
        .unwrap();
        assert_eq!(n, super::GATHER_MAX_READINGS);
    }

    #[test]
    fn a_question_asks_for_all_when_it_opens_with_a_question_word_and_says_all() {
        for yes in [
            "What are all the ledger numbers the archive keeps?",
            "List all the mayors.",
            "Which are all of them?",
            "Find all the numbers kept for the archive.",
        ] {
            assert!(asks_for_all(yes), "{yes}");
        }
        // Titles and names ("All the Marbles", "Y'all"), other openers and no "all" at all do not.
        for no in [
            "What film came out first, All the Marbles or What Ever Happened to Baby Jane?",
            "Which magazine had more monthly publications, Vogue or Y'all?",
            "Of all the teams he played for, which won?",
            "What is the first freedom?",
        ] {
            assert!(!asks_for_all(no), "{no}");
        }
    }
}
