//! What a question is asked with: the modes, the retrieval methods and the options of
//! [`Engine::ask`](crate::engine::Engine), with their defaults and limits.

use crate::error::{Error, Result};

/// Answers are short (HotpotQA's gold answers are 1-4 words): 32 tokens leave room for a name or a
/// date with its context; generation also stops at the end of the first line (`stop_at_newline`).
pub const DEFAULT_MAX_NEW_TOKENS: usize = 32;
pub const DEFAULT_TOP_K: usize = 4;
pub const DEFAULT_RETRIEVAL: Retrieval = Retrieval::Fused;
/// Soft tokens at most in `compressed` and `hybrid`: a longer document's chunk vectors are averaged in
/// runs of consecutive chunks down to this many (the adapter was trained on documents of ~10-100 chunks;
/// a 128K-token document has ~1,000). Chosen on the tuning split and the NIAH grid (reports/tune.md,
/// reports/niah.md): 64 beat 256 and one-per-chunk on both.
pub const DEFAULT_MAX_SOFT_TOKENS: usize = 64;
/// `rcc` reads the memory of all of a document's chunks up to this many; beyond, of this many chosen
/// by retrieval (as `top_k` for rag), in document order: what RCC training does (`memory_chunks` in
/// onnx/train_configs/rcc-cpu.json).
pub const DEFAULT_MEMORY_CHUNKS: usize = 4;
/// See [`AskOptions::min_relevance`]. Chosen on the tuning split (reports/answer_rules.md): 0.5 raised
/// rag's EM, F1 and answer-contained by about 0.02 on 600 HotpotQA questions and 0.026 on 80 in 8K-32K
/// documents; 0.4, 0.6 and 0.7 did worse (0.6 and 0.7 drop chunks that hold the answer).
pub const DEFAULT_MIN_RELEVANCE: f64 = 0.5;
/// Upper bound on `max_new_tokens` (the decoder's window bounds it further).
pub const MAX_NEW_TOKENS_LIMIT: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    Compressed,
    Hybrid,
    Rag,
    Full,
    QuestionOnly,
    Rcc,
}

impl std::str::FromStr for Mode {
    type Err = Error;
    fn from_str(value: &str) -> Result<Mode> {
        crate::error::parse_value("mode", value)
    }
}

impl Mode {
    pub fn name(self) -> String {
        crate::error::value_name(&self)
    }

    pub(super) fn uses_adapter(self) -> bool {
        matches!(self, Mode::Compressed | Mode::Hybrid)
    }

    /// The prompt holds document text (retrieved chunks or the whole document).
    pub(super) fn reads_text(self) -> bool {
        matches!(self, Mode::Hybrid | Mode::Rag | Mode::Full)
    }

    pub(super) fn retrieves(self) -> bool {
        matches!(self, Mode::Hybrid | Mode::Rag | Mode::Rcc)
    }

    /// The prompt holds the raw text of the chunks retrieval chose.
    pub(super) fn retrieves_text(self) -> bool {
        matches!(self, Mode::Hybrid | Mode::Rag)
    }
}

/// How `rag` and `hybrid` choose the chunks whose raw text goes into the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Retrieval {
    /// Cosine between the question's encoder vector and the stored chunk vectors.
    Dense,
    /// BM25 over the chunk texts (exact terms: names, numbers).
    Lexical,
    /// Reciprocal rank fusion of the two rankings.
    Fused,
}

impl std::str::FromStr for Retrieval {
    type Err = Error;
    fn from_str(value: &str) -> Result<Retrieval> {
        crate::error::parse_value("retrieval", value)
    }
}

#[derive(Debug, Clone)]
pub struct AskOptions {
    pub mode: Mode,
    pub max_new_tokens: usize,
    pub top_k: usize,
    pub retrieval: Retrieval,
    /// Soft tokens at most (`compressed`, `hybrid`); see [`DEFAULT_MAX_SOFT_TOKENS`].
    pub max_soft_tokens: usize,
    /// Chunks whose memory `rcc` reads at most; see [`DEFAULT_MEMORY_CHUNKS`].
    pub memory_chunks: usize,
    /// Reuse (and keep) the KV cache of the question-independent prompt prefix.
    pub prefix_cache: bool,
    /// Stop at the first line break after some text (answers are one line); off for multi-line output.
    pub stop_at_newline: bool,
    /// Report the prompt as the decoder read it (token ids and soft-token counts) in the answer.
    pub show_prompt: bool,
    /// Extractive decoding: the answer is a span copied from the prompt's text context (rag, hybrid,
    /// full); see `GenerateOptions::copy_from`.
    pub extractive: bool,
    /// Complete a number the answer has started (see `GenerateOptions::whole_numbers`): to a number of
    /// the prompt's text that it begins (rag, hybrid, full), else while a next digit is likely enough.
    pub whole_numbers: bool,
    /// Complete a span of the prompt's text the answer has started (rag, hybrid, full; see
    /// `GenerateOptions::whole_spans`): where the answer would end inside one, a likely next word of
    /// the text goes on. Chosen on the tuning split (reports/answer_rules.md): answer-contained +0.008
    /// (rag) and +0.005 (hybrid), EM and F1 level or up. In every mode, too: an answer that is part of a
    /// name a question offers as an option ("Polly" for "Mary Collins or Polly Draper?") is given as the
    /// question writes it whole (`choice::whole_option`).
    pub whole_spans: bool,
    /// Yes/no questions (an opening auxiliary verb, no "A or B" choice) in every mode that reads the
    /// document: an answer that would begin with "yes" or "no" takes the one the document raised more
    /// over the question alone (see `GenerateOptions::yes_no_prior`; one more prefill of the question;
    /// not with extractive decoding, which chooses its first token by its own rule).
    /// Chosen on the tuning split (reports/answer_rules.md): the decoder answered "no" to 41 of 43
    /// yes/no questions; calibrated, rag answers 25 of them right instead of 18.
    pub calibrate_yes_no: bool,
    /// In the modes that read document text (rag, hybrid, full; others ignore it): an answer that only
    /// repeats words of the question is decoded again (see `GenerateOptions::avoid_repeating`), except
    /// for questions that offer a choice ("A or B?"). Chosen on the tuning split (reports/repeats.md):
    /// it helps where the retry can find the answer in the prompt's text, and hurts without text.
    pub avoid_repeating: bool,
    /// In the modes that read retrieved text (rag, hybrid; not full, see below): an answer with a word
    /// that text lacks (a made-up name, a number read nowhere) is decoded again as a span copied from that
    /// text (see `GenerateOptions::extractive_fallback`); the answer then carries the decoder's own one
    /// (`Answer::replaced_answer`). Chosen on the tuning split with the relevance floor on
    /// (reports/answer_rules.md): EM, F1 and answer-contained +0.007, +0.006, +0.008 (rag) and +0.012
    /// each (hybrid). Off until the replaced answer was reported: a bare copy hid that the decoder's
    /// own answer had no evidence, the user's best warning that an answer is wrong. Not in full mode:
    /// there the copy comes from the whole document, and on the tuning split it changed 13 of 200
    /// answers, none for the better (F1 -0.002).
    pub extractive_fallback: bool,
    /// Retrieval in rag and hybrid keeps of its `top_k` chunks only those that reach this share of the
    /// best chunk's score under dense or lexical scoring (see `lexical::keep_relevant`): fewer chunks that
    /// cannot hold the answer compete with the one that does. 0 keeps all; at most 1. Not applied to the
    /// memories rcc reads (trained on `memory_chunks` of them; not measured there).
    pub min_relevance: f64,
    /// In the modes that read retrieved text (rag, hybrid): when the answer is weak — no evidence (no
    /// sentence quotes it, none read holds its words) and not a bare yes/no, or the extractive fallback
    /// replaced it, or it only repeats a question that offers no choice (`ask::weak`) — retrieve again
    /// with a second hop and answer from that reading instead (`Answer::second_hop`):
    /// BM25 of the question together with the first reading's best chunk (`lexical::second_hop`),
    /// fused with the question's own rankings and weighted above them. A two-hop question's answer often
    /// shares no word with the question, only a name with the chunk that matches it. One more prefill
    /// and generation, on weak answers only (62 of the tuning split's 600 questions in rag; a weak answer
    /// whose second retrieval picks the same chunks is kept without reading again). Chosen on the tuning
    /// split (reports/answer_rules.md): F1 +0.012 [+0.003, +0.022] (rag) and +0.014 [+0.005, +0.024]
    /// (hybrid), EM and answer-contained up by about 0.01 too.
    pub second_hop: bool,
    /// In the modes that read retrieved text (rag, hybrid): when the answer's evidence is one of several
    /// like facts in the text read and another of them holds more of the question's terms
    /// (`evidence::parallel`), the question is read again from that fact's chunk alone, and the answer
    /// of that reading is kept where the chunk holds it (`Answer::refocused`). One more prefill and
    /// generation, for such answers only.
    pub refocus: bool,
    /// In the modes that read retrieved text (rag, hybrid): a question that asks for all of something
    /// ("What are all the ...?") looks for like facts of the first answer's (of the same subject, or of
    /// another the question names) in the whole document, reads each one's chunk alone (or the fact's
    /// sentence alone, where the chunk answers with another fact) and joins the answers
    /// (`Answer::gathered`). One or two more prefills and generations per fact (8 facts at most), for such
    /// questions only.
    pub gather: bool,
    /// In the modes that read the document's text (rag, hybrid, full): a question that asks which of two
    /// options it names came first or last ("Who was born first, A or B?", "Which film is more recent, A
    /// or B?") is answered with the option whose first year in the document is the earlier or the later
    /// (`choice::by_years`; `Answer::compared`), where the document gives both a year and the years
    /// differ. The 135M decoder picks the wrong option of such questions about half the time; comparing
    /// two numbers is no reading it needs to do. No more decoding.
    pub compare_years: bool,
}

impl Default for AskOptions {
    fn default() -> Self {
        AskOptions {
            mode: Mode::Rag,
            max_new_tokens: DEFAULT_MAX_NEW_TOKENS,
            top_k: DEFAULT_TOP_K,
            retrieval: DEFAULT_RETRIEVAL,
            max_soft_tokens: DEFAULT_MAX_SOFT_TOKENS,
            memory_chunks: DEFAULT_MEMORY_CHUNKS,
            prefix_cache: true,
            stop_at_newline: true,
            show_prompt: false,
            extractive: false,
            whole_numbers: true,
            whole_spans: true,
            calibrate_yes_no: true,
            avoid_repeating: true,
            extractive_fallback: true,
            min_relevance: DEFAULT_MIN_RELEVANCE,
            second_hop: true,
            refocus: true,
            gather: true,
            compare_years: true,
        }
    }
}

impl AskOptions {
    /// How many chunks retrieval picks in this mode, and the relevance floor it applies to them:
    /// `top_k` and `min_relevance` (rag, hybrid); `memory_chunks` and none (rcc: trained reading that
    /// many memories; the floor was tuned on rag, not measured there).
    pub(super) fn retrieval_budget(&self) -> (usize, f64) {
        match self.mode {
            Mode::Rcc => (self.memory_chunks, 0.0),
            _ => (self.top_k, self.min_relevance),
        }
    }

    /// Whether a decoding rule compares the answer with the prompt's text (`GenerateOptions::prompt_text`):
    /// whole numbers, whole spans, the extractive fallback. Extractive decoding reads it too, as the
    /// text it copies from.
    pub(super) fn rules_read_prompt_text(&self) -> bool {
        self.whole_numbers || self.whole_spans || self.extractive_fallback_applies()
    }

    /// The extractive fallback runs on retrieved text only (rag, hybrid): copying from the whole document
    /// (full) changed 13 of 200 tuning answers, none for the better (reports/answer_rules.md).
    pub(super) fn extractive_fallback_applies(&self) -> bool {
        self.extractive_fallback && self.mode.retrieves_text()
    }

    /// Comparing years of the document's text: the modes whose decoder reads it (see `compare_years`).
    pub(super) fn compare_years_applies(&self) -> bool {
        self.compare_years && self.mode.reads_text()
    }

    /// Reading a parallel fact's chunk alone: rag and hybrid only (see `refocus`).
    pub(super) fn refocus_applies(&self) -> bool {
        self.refocus && self.mode.retrieves_text()
    }

    /// Gathering the answers of like facts: rag and hybrid only (see `gather`).
    pub(super) fn gather_applies(&self) -> bool {
        self.gather && self.mode.retrieves_text()
    }

    /// The second hop re-retrieves text: rag and hybrid only (see `second_hop`).
    pub(super) fn second_hop_applies(&self) -> bool {
        self.second_hop && self.mode.retrieves_text()
    }

    pub fn validate(&self) -> Result<()> {
        if self.max_new_tokens > MAX_NEW_TOKENS_LIMIT {
            return Err(Error::Invalid(format!(
                "max_new_tokens {} is above the limit of {MAX_NEW_TOKENS_LIMIT}",
                self.max_new_tokens
            )));
        }
        if self.top_k == 0 {
            return Err(Error::Invalid("top_k must be at least 1".into()));
        }
        if self.max_soft_tokens == 0 {
            return Err(Error::Invalid("max_soft_tokens must be at least 1".into()));
        }
        if self.memory_chunks == 0 {
            return Err(Error::Invalid("memory_chunks must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.min_relevance) {
            return Err(Error::Invalid(format!("min_relevance must be between 0 and 1, got {}", self.min_relevance)));
        }
        if self.extractive && !self.mode.reads_text() {
            return Err(Error::Invalid(format!(
                "extractive decoding copies from the prompt's text: mode {} has none (use rag, hybrid or full)",
                self.mode.name()
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retrieval_reads_top_k_over_the_floor_but_every_rcc_memory_chunk() {
        let options = AskOptions { top_k: 3, memory_chunks: 6, min_relevance: 0.5, ..AskOptions::default() };
        for mode in [Mode::Rag, Mode::Hybrid] {
            assert_eq!(AskOptions { mode, ..options.clone() }.retrieval_budget(), (3, 0.5));
        }
        assert_eq!(AskOptions { mode: Mode::Rcc, ..options }.retrieval_budget(), (6, 0.0));
    }

    #[test]
    fn the_extractive_fallback_applies_to_retrieved_text_only() {
        let bare = AskOptions { whole_numbers: false, whole_spans: false, ..AskOptions::default() };
        for mode in [Mode::Rag, Mode::Hybrid] {
            let options = AskOptions { mode, ..bare.clone() };
            assert!(options.extractive_fallback_applies() && options.rules_read_prompt_text(), "{mode:?}");
        }
        // Full reads the whole document: no rule left to compare the answer with it.
        let full = AskOptions { mode: Mode::Full, ..bare.clone() };
        assert!(!full.extractive_fallback_applies() && !full.rules_read_prompt_text());
        let off = AskOptions { extractive_fallback: false, ..bare };
        assert!(!off.extractive_fallback_applies() && !off.rules_read_prompt_text());
    }

    #[test]
    fn the_second_hop_applies_to_retrieved_text_only() {
        for mode in [Mode::Rag, Mode::Hybrid] {
            assert!(AskOptions { mode, ..AskOptions::default() }.second_hop_applies(), "{mode:?}");
            assert!(!AskOptions { mode, second_hop: false, ..AskOptions::default() }.second_hop_applies());
        }
        for mode in [Mode::Full, Mode::Compressed, Mode::QuestionOnly, Mode::Rcc] {
            assert!(!AskOptions { mode, ..AskOptions::default() }.second_hop_applies(), "{mode:?}");
        }
    }

    #[test]
    fn one_name_per_variant_for_clap_serde_and_sql() {
        use clap::ValueEnum;
        for mode in Mode::value_variants() {
            let name = mode.name();
            assert_eq!(name.parse::<Mode>().unwrap(), *mode);
            assert_eq!(serde_json::to_value(mode).unwrap(), serde_json::json!(name));
        }
        for retrieval in Retrieval::value_variants() {
            let name = retrieval.to_possible_value().unwrap().get_name().to_string();
            assert_eq!(name.parse::<Retrieval>().unwrap(), *retrieval);
            assert_eq!(serde_json::to_value(retrieval).unwrap(), serde_json::json!(name));
        }
        assert_eq!(Mode::QuestionOnly.name(), "question-only");
        let err = "telepathy".parse::<Mode>().unwrap_err().to_string();
        assert!(err.contains("unknown mode `telepathy`") && err.contains("question-only"), "{err}");
    }

    fn invalid(options: AskOptions) -> String {
        match options.validate() {
            Err(Error::Invalid(message)) => message,
            other => panic!("expected an invalid-argument error, got {other:?}"),
        }
    }

    #[test]
    fn the_defaults_are_valid_and_each_limit_is_checked() {
        let defaults = AskOptions::default();
        assert!(defaults.validate().is_ok());
        assert_eq!((defaults.mode, defaults.retrieval, defaults.top_k), (Mode::Rag, Retrieval::Fused, 4));
        let at_limit = AskOptions { max_new_tokens: MAX_NEW_TOKENS_LIMIT, ..AskOptions::default() };
        assert!(at_limit.validate().is_ok());
        assert_eq!(
            invalid(AskOptions { max_new_tokens: MAX_NEW_TOKENS_LIMIT + 1, ..AskOptions::default() }),
            "max_new_tokens 4097 is above the limit of 4096"
        );
        assert_eq!(invalid(AskOptions { top_k: 0, ..AskOptions::default() }), "top_k must be at least 1");
        assert_eq!(
            invalid(AskOptions { max_soft_tokens: 0, ..AskOptions::default() }),
            "max_soft_tokens must be at least 1"
        );
        assert_eq!(
            invalid(AskOptions { memory_chunks: 0, ..AskOptions::default() }),
            "memory_chunks must be at least 1"
        );
        for bad in [-0.1, 1.5, f64::NAN] {
            assert!(invalid(AskOptions { min_relevance: bad, ..AskOptions::default() })
                .starts_with("min_relevance must be between 0 and 1"));
        }
    }

    #[test]
    fn extractive_decoding_needs_a_mode_with_prompt_text() {
        for mode in [Mode::Rag, Mode::Hybrid, Mode::Full] {
            assert!(AskOptions { mode, extractive: true, ..AskOptions::default() }.validate().is_ok(), "{mode:?}");
        }
        for mode in [Mode::Compressed, Mode::QuestionOnly, Mode::Rcc] {
            let message = invalid(AskOptions { mode, extractive: true, ..AskOptions::default() });
            assert_eq!(
                message,
                format!(
                    "extractive decoding copies from the prompt's text: mode {} has none (use rag, hybrid or full)",
                    mode.name()
                )
            );
            assert!(AskOptions { mode, ..AskOptions::default() }.validate().is_ok(), "{mode:?}");
        }
    }

    #[test]
    fn modes_say_what_they_load() {
        let adapter: Vec<Mode> = [Mode::Compressed, Mode::Hybrid, Mode::Rag, Mode::Full, Mode::QuestionOnly, Mode::Rcc]
            .into_iter()
            .filter(|m| m.uses_adapter())
            .collect();
        assert_eq!(adapter, [Mode::Compressed, Mode::Hybrid]);
        let retrieving: Vec<Mode> =
            [Mode::Compressed, Mode::Hybrid, Mode::Rag, Mode::Full, Mode::QuestionOnly, Mode::Rcc]
                .into_iter()
                .filter(|m| m.retrieves())
                .collect();
        assert_eq!(retrieving, [Mode::Hybrid, Mode::Rag, Mode::Rcc]);
        let text: Vec<Mode> = [Mode::Compressed, Mode::Hybrid, Mode::Rag, Mode::Full, Mode::QuestionOnly, Mode::Rcc]
            .into_iter()
            .filter(|m| m.reads_text())
            .collect();
        assert_eq!(text, [Mode::Hybrid, Mode::Rag, Mode::Full]);
    }
}
