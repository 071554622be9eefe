//! What generation is asked for and how each step's token is chosen: greedy, extractive (a span
//! of the prompt's text) or greedy that does not end inside a number; when the answer ends (end of
//! turn, end of its first line); and the answer's text. Pure logic over the logits and a
//! [`Vocabulary`], so the rules run without models in the unit tests below.

use std::time::Duration;

use super::PREFILL_SLICE;
use crate::error::Result;

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Prompt positions per prefill step.
    pub prefill_slice: usize,
    /// Stop at the first line break that follows some non-blank text (the break is not kept).
    pub stop_at_newline: bool,
    /// Extractive decoding: the answer must be a span of this text (compared case-insensitively,
    /// whitespace collapsed). Each step takes the most likely of the top candidates that keeps the answer
    /// inside the text, or ends the answer when none does.
    pub copy_from: Option<String>,
    /// An answer does not end inside a number: where the decoder would end the answer (end of turn, or
    /// the line break `stop_at_newline` stops at) right after a digit, but gives a next digit at least
    /// [`NUMBER_CONTINUATION`] probability, the number goes on. The tokenizer splits numbers into
    /// single digits, and the trained decoder sometimes ends after the first ("How many steps ...?"
    /// -> "9" where the document says 902: end 0.88, "0" 0.10). Not applied to extractive decoding.
    /// With `prompt_text`, the numbers of that text decide first (see there).
    pub whole_numbers: bool,
    /// An answer does not end inside a span of `prompt_text` that the text goes on from with a likely
    /// word: where the decoder would end the answer (end of turn, or the line break `stop_at_newline`
    /// stops at) while the answer so far is a span of the text, the likeliest next token that keeps it
    /// a span and goes on with a letter or digit is taken instead when it has at least
    /// [`SPAN_CONTINUATION`] probability ("The first is freedom of speech and expression" answered
    /// "freedom": end of turn first, " of" next). Not applied to extractive decoding.
    pub whole_spans: bool,
    /// The prompt's document text, for `whole_spans` (see there) and `whole_numbers`: where the answer
    /// would end right after digits that are not a whole number of this text but begin one or more of
    /// its numbers, the number goes on with the likeliest digit that keeps it the beginning of one of them (a needle "902" answered
    /// "9": end of turn 0.95, "0" 0.03, under [`NUMBER_CONTINUATION`]). Digits that are a whole number
    /// of the text, or begin none of its numbers, follow the probability rule.
    pub prompt_text: Option<String>,
    /// Text the answer must add to (the question): an answer whose words all appear, in order, in
    /// this text is decoded again with its first token banned, up to [`REPEAT_RETRIES`] times; when
    /// every retry repeats it too, the first answer stands. The trained decoder often answers with a
    /// name the question already gave ("... built on a cliff ... on the model of what castle?" ->
    /// "Findlater", the castle the question is about).
    pub avoid_repeating: Option<String>,
    /// An answer with a word that is no word of `prompt_text` (a bare "yes" or "no" excepted; see
    /// [`invents_words`]) is decoded again extractively, as a span copied from that text, and the span
    /// replaces it when it is whole words of the text and about as long (see [`keeps_copy`]). Such
    /// answers are mostly wrong (held-out rag: F1 0.10 against 0.35 for answers the document holds).
    /// The decoder's own answer is then reported (`Generation::replaced`).
    pub extractive_fallback: bool,
    /// Log-probabilities of the first answer token given the question alone (no document): where the
    /// answer would begin with "yes" or "no", the two are compared by how much the prompt raised each
    /// over this prior (log p - log p_prior), not by p alone. The trained decoder answers "no" to
    /// almost every yes/no question (41 of the tuning split's 43, 23 of them "yes" in the gold); the
    /// prior carries that lean, so the comparison removes it (calibration by the question-only prompt).
    pub yes_no_prior: Option<Vec<f32>>,
}

/// Answers decoded again at most when they only repeat `GenerateOptions::avoid_repeating`; fixed
/// before measuring, not tuned.
pub const REPEAT_RETRIES: usize = 2;

/// Smallest probability of a token that keeps an answer going as a span of the prompt's text (see
/// `GenerateOptions::whole_spans`); fixed before measuring, then checked against 0.2 on the tuning
/// split (0.2 changed half as many answers, for half the gain).
pub const SPAN_CONTINUATION: f32 = 0.1;

/// Smallest probability of a next digit that keeps a number going (see `GenerateOptions::whole_numbers`);
/// fixed before measuring, not tuned.
pub const NUMBER_CONTINUATION: f32 = 0.05;

impl GenerateOptions {
    pub fn new(max_new_tokens: usize) -> Self {
        GenerateOptions {
            max_new_tokens,
            prefill_slice: PREFILL_SLICE,
            stop_at_newline: false,
            copy_from: None,
            whole_numbers: false,
            whole_spans: false,
            prompt_text: None,
            avoid_repeating: None,
            extractive_fallback: false,
            yes_no_prior: None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub time_to_first_token: Duration,
    pub total: Duration,
    /// The prompt's prefix KV cache came from the prefix cache (only the rest was prefilled).
    pub prefix_cache_hit: bool,
    /// The decoder's own answer, when the extractive fallback replaced it with a copy of the text (one
    /// of its words is no word of the prompt's text; see `GenerateOptions::extractive_fallback`).
    pub replaced: Option<String>,
}

/// What the decoding rules need of the decoder's vocabulary.
pub(super) trait Vocabulary {
    /// Token ids that end the answer (end of turn); the first is the one extractive decoding ends with.
    fn eos_ids(&self) -> &[u32];
    /// Token ids of the ten digits, where the vocabulary has them as single tokens.
    fn digit_ids(&self) -> &[u32];
    /// The text of token ids, special tokens skipped.
    fn text_of(&self, ids: &[u32]) -> Result<String>;
    /// For a token that reads "yes" or "no" (a leading space and capitals allowed), the one that reads
    /// the other the same way.
    fn opposite(&self, id: u32) -> Option<u32>;
}

/// How a token ends the answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum End {
    /// End of turn: the token is not part of the answer.
    Before,
    /// The token ends the answer's first line: kept, as it may carry text before its line break
    /// (".\n"); [`answer_text`] cuts the break.
    After,
}

/// The prompt's text as the decoding rules compare answers with it ([`normalise`]d once per answer).
#[derive(Debug, Clone, Default)]
pub(super) struct Sources {
    /// What extractive decoding copies from (`GenerateOptions::copy_from`).
    pub copy: Option<String>,
    /// What `GenerateOptions::whole_spans` continues spans of (`prompt_text`).
    pub spans: Option<String>,
}

impl Sources {
    pub fn of(options: &GenerateOptions) -> Sources {
        let spans = options.prompt_text.as_deref().filter(|_| options.whole_spans);
        Sources { copy: options.copy_from.as_deref().map(normalise), spans: spans.map(normalise) }
    }
}

/// The next token after `before` given the step's `logits`: extractive when `sources.copy` is
/// given, else greedy, kept from ending inside a number with `options.whole_numbers` and inside a
/// span of the prompt's text with `options.whole_spans`.
pub(super) fn next_token(
    vocabulary: &impl Vocabulary,
    logits: &[f32],
    before: &[u32],
    sources: &Sources,
    options: &GenerateOptions,
) -> Result<u32> {
    if let Some(copy) = &sources.copy {
        return extractive_next(vocabulary, logits, before, copy);
    }
    if before.is_empty() {
        if let Some(prior) = &options.yes_no_prior {
            return Ok(calibrated_first(vocabulary, logits, prior));
        }
    }
    let next =
        if options.whole_numbers { whole_number_next(vocabulary, logits, before, options)? } else { argmax(logits) };
    if let Some(spans) = &sources.spans {
        if !before.is_empty() && ends(vocabulary, before, next, options)?.is_some() {
            if let Some(going_on) = span_next(vocabulary, logits, before, spans)? {
                return Ok(going_on);
            }
        }
    }
    Ok(next)
}

/// Whether `next` ends the answer `before`: end of turn, or (with `stop_at_newline`) the end of its
/// first line.
pub(super) fn ends(
    vocabulary: &impl Vocabulary,
    before: &[u32],
    next: u32,
    options: &GenerateOptions,
) -> Result<Option<End>> {
    if vocabulary.eos_ids().contains(&next) {
        return Ok(Some(End::Before));
    }
    if options.stop_at_newline && ends_line(vocabulary, before, next)? {
        return Ok(Some(End::After));
    }
    Ok(None)
}

/// The answer given the text of its tokens: its first line with `stop_at_newline`, trimmed.
pub(super) fn answer_text(text: &str, options: &GenerateOptions) -> String {
    let text = if options.stop_at_newline { first_line(text) } else { text };
    text.trim().to_string()
}

/// The text's words: lower case, runs of letters and digits, each with one space before and after
/// (so that containment is of whole words).
pub fn words(text: &str) -> String {
    let mut out = String::from(" ");
    for word in text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()) {
        out.push_str(&word.to_lowercase());
        out.push(' ');
    }
    out
}

/// True when the answer's words are a bare "yes" or "no" (any case, any punctuation): an answer, not a
/// quote of any text.
pub fn yes_or_no(answer: &str) -> bool {
    matches!(words(answer).trim(), "yes" | "no")
}

/// True when `answer` has words, is not a bare "yes" or "no", and its words are not, in order and
/// adjacent, in `text` (given as [`words`]): the answer quotes nothing of the text
/// (`GenerateOptions::extractive_fallback`).
pub(super) fn unquoted(answer: &str, text: &str) -> bool {
    let quoted = words(answer);
    quoted.len() > 1 && !yes_or_no(answer) && !text.contains(&quoted)
}

/// True when `answer` has words, is not a bare "yes" or "no", and one of its words is no word of
/// `text` (given as [`words`]): the answer says something the text does not, a name or number made up
/// or read elsewhere (`GenerateOptions::extractive_fallback`). An answer made of the text's words in
/// another order ("the Congress of the Seventy-seventh Congress") is the decoder's reading of it.
pub(super) fn invents_words(answer: &str, text: &str) -> bool {
    let answer_words = words(answer);
    let mut each = answer_words.split_whitespace().peekable();
    each.peek().is_some() && !yes_or_no(answer) && each.any(|w| !text.contains(&format!(" {w} ")))
}

/// Words a copy made by the extractive fallback may have beyond the decoder's own answer; fixed
/// before measuring (no copy on the tuning split was longer than that: it changes none of its answers).
pub const COPY_EXTRA_WORDS: usize = 3;

/// Whether the extractive fallback's copy replaces the decoder's own answer: the copy is whole words
/// of `text` (given as [`words`]), in order (not "Ci" cut from "Cities"), and about as long as the
/// answer it replaces (at most [`COPY_EXTRA_WORDS`] more words): a quoted sentence in place of a
/// few words ("to expand the space program" -> a 16-word sentence of the address) is not an answer.
pub(super) fn keeps_copy(own: &str, copy: &str, text: &str) -> bool {
    let count = |s: &str| words(s).split_whitespace().count();
    !copy.trim().is_empty() && !unquoted(copy, text) && count(copy) <= count(own) + COPY_EXTRA_WORDS
}

/// True when `answer` has words and they all appear, in order and adjacent, in `avoided` (given as
/// [`words`]): the answer repeats the question instead of answering it.
pub fn repeats(answer: &str, avoided: &str) -> bool {
    let answer = words(answer);
    answer.len() > 1 && avoided.contains(&answer)
}

/// The most likely of the top `EXTRACTIVE_CANDIDATES` tokens that keeps the answer a span of
/// `source` (normalised), or that ends the answer (end of turn, a line break); end of turn when none.
fn extractive_next(vocabulary: &impl Vocabulary, logits: &[f32], before: &[u32], source: &str) -> Result<u32> {
    let eos = vocabulary.eos_ids().first().copied().unwrap_or(0);
    let mut ids = before.to_vec();
    for candidate in likeliest(logits, EXTRACTIVE_CANDIDATES) {
        if vocabulary.eos_ids().contains(&candidate) {
            return Ok(candidate);
        }
        ids.push(candidate);
        let text = normalise(&vocabulary.text_of(&ids)?);
        ids.pop();
        // Whitespace (a line break included) keeps the normalised answer a span: allowed, and
        // `stop_at_newline` then ends the answer there.
        if text.is_empty() || source.contains(&text) {
            return Ok(candidate);
        }
    }
    Ok(eos)
}

/// The greedy first token, except that "yes" and "no" compete by their gain over `prior` (the
/// question-only log-probabilities; see `GenerateOptions::yes_no_prior`).
fn calibrated_first(vocabulary: &impl Vocabulary, logits: &[f32], prior: &[f32]) -> u32 {
    let next = argmax(logits);
    let Some(other) = vocabulary.opposite(next) else { return next };
    let gain = |id: u32| logits[id as usize] - prior.get(id as usize).copied().unwrap_or(0.0);
    if (other as usize) < logits.len() && gain(other) > gain(next) {
        other
    } else {
        next
    }
}

/// When the answer `before` is a span of `spans` (normalised): the likeliest of the top candidates
/// that keeps it one and starts with a letter or digit (a next word, or the rest of this one), if it
/// has at least [`SPAN_CONTINUATION`] probability (see `GenerateOptions::whole_spans`).
fn span_next(vocabulary: &impl Vocabulary, logits: &[f32], before: &[u32], spans: &str) -> Result<Option<u32>> {
    let answer = normalise(&vocabulary.text_of(before)?);
    if answer.is_empty() || !begins_at_word(spans, &answer) {
        return Ok(None);
    }
    let mut ids = before.to_vec();
    for candidate in likeliest(logits, EXTRACTIVE_CANDIDATES) {
        if vocabulary.eos_ids().contains(&candidate) {
            continue;
        }
        let piece = vocabulary.text_of(&[candidate])?;
        if piece.contains('\n') || !piece.trim_start().starts_with(char::is_alphanumeric) {
            continue;
        }
        ids.push(candidate);
        let text = normalise(&vocabulary.text_of(&ids)?);
        ids.pop();
        if text.len() > answer.len() && begins_at_word(spans, &text) {
            return Ok((probability(logits, candidate as usize) >= SPAN_CONTINUATION).then_some(candidate));
        }
    }
    Ok(None)
}

/// True when `part` occurs in `text` starting at the beginning of a word (it may end inside one).
fn begins_at_word(text: &str, part: &str) -> bool {
    text.match_indices(part).any(|(at, _)| !text[..at].ends_with(char::is_alphanumeric))
}

/// The `n` token ids of highest logit, most likely first.
fn likeliest(logits: &[f32], n: usize) -> Vec<u32> {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    let top = n.min(order.len());
    order.select_nth_unstable_by(top.saturating_sub(1), |&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(top);
    order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.into_iter().map(|i| i as u32).collect()
}

/// The greedy next token, unless it would end the answer (end of turn, or the line break
/// `stop_at_newline` stops at) right after a digit while a next digit has at least
/// [`NUMBER_CONTINUATION`] probability: then that digit (see `GenerateOptions::whole_numbers`).
/// Runs every step, so the cheap test (does the answer end in a digit?) comes first.
fn whole_number_next(
    vocabulary: &impl Vocabulary,
    logits: &[f32],
    before: &[u32],
    options: &GenerateOptions,
) -> Result<u32> {
    let next = argmax(logits);
    let Some(&last) = before.last() else { return Ok(next) };
    if !vocabulary.text_of(&[last])?.ends_with(|c: char| c.is_ascii_digit()) {
        return Ok(next);
    }
    if ends(vocabulary, before, next, options)?.is_none() {
        return Ok(next);
    }
    if let Some(text) = options.prompt_text.as_deref() {
        let answer = vocabulary.text_of(before)?;
        let started = trailing_digits(&answer);
        let numbers = numbers_in(text);
        if !numbers.contains(&started) {
            let fits = |d: &u32| -> Result<bool> {
                let digit = vocabulary.text_of(&[*d])?;
                let longer = format!("{started}{digit}");
                Ok(numbers.iter().any(|n| n.starts_with(&longer)))
            };
            let mut best: Option<u32> = None;
            for &d in vocabulary.digit_ids().iter().filter(|&&d| (d as usize) < logits.len()) {
                if fits(&d)? && best.is_none_or(|b| logits[d as usize] > logits[b as usize]) {
                    best = Some(d);
                }
            }
            if let Some(digit) = best {
                return Ok(digit);
            }
        }
    }
    let digit = vocabulary
        .digit_ids()
        .iter()
        .copied()
        .filter(|&d| (d as usize) < logits.len())
        .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]));
    Ok(digit.filter(|&d| probability(logits, d as usize) >= NUMBER_CONTINUATION).unwrap_or(next))
}

/// The run of ASCII digits at the end of `text` ("" when it does not end in a digit).
fn trailing_digits(text: &str) -> &str {
    let start = text.trim_end_matches(|c: char| c.is_ascii_digit()).len();
    &text[start..]
}

/// The maximal runs of ASCII digits in `text`, each once.
fn numbers_in(text: &str) -> std::collections::BTreeSet<&str> {
    text.split(|c: char| !c.is_ascii_digit()).filter(|n| !n.is_empty()).collect()
}

/// True when `next` holds a line break and the text so far (`before`) is not blank: the answer's
/// first line is complete. A break before any text is kept (some answers start on a new line).
fn ends_line(vocabulary: &impl Vocabulary, before: &[u32], next: u32) -> Result<bool> {
    if !vocabulary.text_of(&[next])?.contains('\n') {
        return Ok(false);
    }
    Ok(!vocabulary.text_of(before)?.trim().is_empty())
}

/// The text up to the first line break that follows non-blank text (all of it when there is none).
fn first_line(text: &str) -> &str {
    let start = text.len() - text.trim_start().len();
    match text[start..].find('\n') {
        Some(end) => &text[..start + end],
        None => text,
    }
}

/// Candidates extractive decoding considers per step, most likely first.
const EXTRACTIVE_CANDIDATES: usize = 64;

/// Lower case, whitespace runs as one space, trimmed: how extractive decoding compares answer and source.
pub(super) fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Softmax probability of `index` under `logits` (computed stably, from the maximum).
fn probability(logits: &[f32], index: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (logits[index] - max).exp() / total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_line_skips_leading_blank_lines() {
        assert_eq!(first_line("\n\n Paris.\n\nThe answer"), "\n\n Paris.");
        assert_eq!(first_line("Paris.\nMore"), "Paris.");
        assert_eq!(first_line("Paris"), "Paris");
        assert_eq!(first_line(""), "");
    }

    #[test]
    fn normalise_collapses_whitespace_and_case() {
        assert_eq!(normalise("  Ada\n  MORROW \t"), "ada morrow");
    }

    #[test]
    fn probability_is_a_stable_softmax() {
        let logits = [0.0f32, (3.0f32).ln(), 1000.0 - 1000.0];
        assert!((probability(&logits, 1) - 0.6).abs() < 1e-6);
        // Large logits do not overflow.
        let large = [1000.0f32, 1000.0, 999.0];
        let p: f32 = (0..3).map(|i| probability(&large, i)).sum();
        assert!((p - 1.0).abs() < 1e-5 && probability(&large, 0) > probability(&large, 2));
    }

    #[test]
    fn argmax_takes_the_first_of_equal_maxima() {
        assert_eq!(argmax(&[0.1, 0.7, 0.2]), 1);
        assert_eq!(argmax(&[0.5, 0.9, 0.9]), 1);
        assert_eq!(argmax(&[]), 0);
    }

    /// A toy vocabulary: token `i` is `WORDS[i]`; 0 is end of turn (skipped in text).
    struct Toy;

    const EOS: u32 = 0;
    const NEWLINE: u32 = 1;
    const PARIS: u32 = 2;
    const DOT_NEWLINE: u32 = 3;
    const NINE: u32 = 4;
    const ZERO: u32 = 5;
    const TWO: u32 = 6;
    const STEPS: u32 = 7;
    const YES: u32 = 8;
    const NO: u32 = 9;
    const WORDS: [&str; 10] = ["<eos>", "\n", " Paris", ".\n", "9", "0", "2", " steps", " yes", " no"];

    impl Vocabulary for Toy {
        fn eos_ids(&self) -> &[u32] {
            &[EOS]
        }
        fn digit_ids(&self) -> &[u32] {
            &[ZERO, TWO, NINE]
        }
        fn text_of(&self, ids: &[u32]) -> Result<String> {
            Ok(ids.iter().filter(|&&id| id != EOS).map(|&id| WORDS[id as usize]).collect())
        }
        fn opposite(&self, id: u32) -> Option<u32> {
            match id {
                YES => Some(NO),
                NO => Some(YES),
                _ => None,
            }
        }
    }

    /// Logits whose softmax gives `chosen` their probabilities and shares the rest evenly.
    fn logits(chosen: &[(u32, f32)]) -> Vec<f32> {
        let rest = (1.0 - chosen.iter().map(|(_, p)| p).sum::<f32>()) / (WORDS.len() - chosen.len()) as f32;
        (0..WORDS.len() as u32).map(|id| chosen.iter().find(|(c, _)| *c == id).map_or(rest, |(_, p)| *p).ln()).collect()
    }

    fn options(stop_at_newline: bool, whole_numbers: bool) -> GenerateOptions {
        GenerateOptions { stop_at_newline, whole_numbers, ..GenerateOptions::new(8) }
    }

    #[test]
    fn a_line_ends_at_a_break_after_some_text() {
        assert!(ends_line(&Toy, &[PARIS], NEWLINE).unwrap());
        assert!(ends_line(&Toy, &[PARIS], DOT_NEWLINE).unwrap());
        assert!(!ends_line(&Toy, &[PARIS], NINE).unwrap());
        // A break before any text (or after blank lines only) does not end the answer.
        assert!(!ends_line(&Toy, &[], NEWLINE).unwrap());
        assert!(!ends_line(&Toy, &[NEWLINE], NEWLINE).unwrap());
    }

    #[test]
    fn the_answer_ends_at_end_of_turn_or_with_its_first_line() {
        let lines = options(true, false);
        assert_eq!(ends(&Toy, &[PARIS], EOS, &lines).unwrap(), Some(End::Before));
        assert_eq!(ends(&Toy, &[], EOS, &options(false, false)).unwrap(), Some(End::Before));
        assert_eq!(ends(&Toy, &[PARIS], DOT_NEWLINE, &lines).unwrap(), Some(End::After));
        assert_eq!(ends(&Toy, &[PARIS], DOT_NEWLINE, &options(false, false)).unwrap(), None);
        assert_eq!(ends(&Toy, &[], NEWLINE, &lines).unwrap(), None);
        assert_eq!(ends(&Toy, &[PARIS], STEPS, &lines).unwrap(), None);
    }

    #[test]
    fn answer_text_is_the_trimmed_first_line_when_asked() {
        assert_eq!(answer_text("\n\n Paris.\n\nThe answer", &options(true, false)), "Paris.");
        assert_eq!(answer_text("\n\n Paris.\n\nThe answer ", &options(false, false)), "Paris.\n\nThe answer");
    }

    #[test]
    fn a_number_goes_on_when_a_next_digit_is_likely_enough() {
        let whole = options(false, true);
        // "9", then end of turn at 0.88 against "0" at 0.10: the number goes on.
        let likely = logits(&[(EOS, 0.88), (ZERO, 0.10)]);
        assert_eq!(next_token(&Toy, &likely, &[NINE], &Sources::default(), &whole).unwrap(), ZERO);
        // Off, or not after a digit, or at the start: greedy.
        assert_eq!(next_token(&Toy, &likely, &[NINE], &Sources::default(), &options(false, false)).unwrap(), EOS);
        assert_eq!(next_token(&Toy, &likely, &[PARIS], &Sources::default(), &whole).unwrap(), EOS);
        assert_eq!(next_token(&Toy, &likely, &[], &Sources::default(), &whole).unwrap(), EOS);
        // A next digit below NUMBER_CONTINUATION does not keep the number going.
        let unlikely = logits(&[(EOS, 0.96), (ZERO, 0.03)]);
        assert_eq!(next_token(&Toy, &unlikely, &[NINE], &Sources::default(), &whole).unwrap(), EOS);
        // The most likely digit is the one taken.
        let two = logits(&[(EOS, 0.80), (ZERO, 0.06), (TWO, 0.12)]);
        assert_eq!(next_token(&Toy, &two, &[NINE], &Sources::default(), &whole).unwrap(), TWO);
    }

    #[test]
    fn a_number_goes_on_to_a_number_of_the_text_it_begins() {
        let mut from_text = options(false, true);
        from_text.prompt_text = Some("The lighthouse has 902 steps and 2 doors, built 1990.".into());
        // "9", end of turn at 0.95, "0" at 0.03 (under NUMBER_CONTINUATION): 902 is in the text.
        let unlikely = logits(&[(EOS, 0.95), (ZERO, 0.03), (TWO, 0.01)]);
        assert_eq!(next_token(&Toy, &unlikely, &[NINE], &Sources::default(), &from_text).unwrap(), ZERO);
        // "90": the one digit that keeps it the beginning of a number of the text, however unlikely.
        let two_unlikely = logits(&[(EOS, 0.95), (ZERO, 0.04), (TWO, 0.001)]);
        assert_eq!(next_token(&Toy, &two_unlikely, &[NINE, ZERO], &Sources::default(), &from_text).unwrap(), TWO);
        // "902" and "2" are whole numbers of the text: they may end.
        assert_eq!(next_token(&Toy, &unlikely, &[NINE, ZERO, TWO], &Sources::default(), &from_text).unwrap(), EOS);
        assert_eq!(next_token(&Toy, &unlikely, &[TWO], &Sources::default(), &from_text).unwrap(), EOS);
        // "99" begins no number of the text: the probability rule (0.03 < 5%: ends).
        assert_eq!(next_token(&Toy, &unlikely, &[NINE, NINE], &Sources::default(), &from_text).unwrap(), EOS);
        // Off without whole_numbers.
        from_text.whole_numbers = false;
        assert_eq!(next_token(&Toy, &unlikely, &[NINE], &Sources::default(), &from_text).unwrap(), EOS);
    }

    #[test]
    fn numbers_are_the_digit_runs_of_a_text() {
        assert_eq!(trailing_digits("has 902"), "902");
        assert_eq!(trailing_digits("902 steps"), "");
        assert_eq!(numbers_in("a 902, b 1,990 and 902").into_iter().collect::<Vec<_>>(), ["1", "902", "990"]);
    }

    #[test]
    fn a_number_goes_on_past_the_line_break_that_would_end_it() {
        let line_break = logits(&[(NEWLINE, 0.85), (ZERO, 0.10)]);
        assert_eq!(next_token(&Toy, &line_break, &[NINE], &Sources::default(), &options(true, true)).unwrap(), ZERO);
        // Without stop_at_newline the break does not end the answer: greedy.
        assert_eq!(
            next_token(&Toy, &line_break, &[NINE], &Sources::default(), &options(false, true)).unwrap(),
            NEWLINE
        );
        // Not a digit before it: greedy.
        assert_eq!(
            next_token(&Toy, &line_break, &[PARIS], &Sources::default(), &options(true, true)).unwrap(),
            NEWLINE
        );
    }

    #[test]
    fn a_span_of_the_text_goes_on_with_a_likely_next_word() {
        let text = "The 902 steps lead to Paris.";
        let spans = &Sources { copy: None, spans: Some(normalise(text)) };
        let plain = options(false, false);
        // "902" would end; " steps" continues the span in the text with 15%: it goes on.
        let likely = logits(&[(EOS, 0.6), (PARIS, 0.25), (STEPS, 0.15)]);
        assert_eq!(next_token(&Toy, &likely, &[NINE, ZERO, TWO], spans, &plain).unwrap(), STEPS);
        // " Paris" is likelier but "902 Paris" is no span of the text; " steps" under the floor: ends.
        let unlikely = logits(&[(EOS, 0.6), (PARIS, 0.35), (STEPS, 0.05)]);
        assert_eq!(next_token(&Toy, &unlikely, &[NINE, ZERO, TWO], spans, &plain).unwrap(), EOS);
        // An answer that is not a span of the text from a word's beginning ("2 steps"), an empty answer, and the text's end
        // ("Paris" goes on with "." only) end as the decoder says.
        assert_eq!(next_token(&Toy, &likely, &[TWO, STEPS], spans, &plain).unwrap(), EOS);
        assert_eq!(next_token(&Toy, &likely, &[], spans, &plain).unwrap(), EOS);
        assert_eq!(next_token(&Toy, &likely, &[PARIS], spans, &plain).unwrap(), EOS);
        // Off without the text: greedy.
        assert_eq!(next_token(&Toy, &likely, &[NINE, ZERO, TWO], &Sources::default(), &plain).unwrap(), EOS);
    }

    #[test]
    fn yes_and_no_compete_by_their_gain_over_the_question_alone() {
        let mut calibrated = options(true, true);
        // Without the document the decoder says "no" at 0.9 and "yes" at 0.05.
        calibrated.yes_no_prior = Some(logits(&[(NO, 0.9), (YES, 0.05)]));
        // With it, "no" 0.6 and "yes" 0.3: "yes" gained (x6), "no" lost.
        let read = logits(&[(NO, 0.6), (YES, 0.3)]);
        assert_eq!(next_token(&Toy, &read, &[], &Sources::default(), &calibrated).unwrap(), YES);
        // "no" that gained more stays.
        let firmer = logits(&[(NO, 0.97), (YES, 0.02)]);
        assert_eq!(next_token(&Toy, &firmer, &[], &Sources::default(), &calibrated).unwrap(), NO);
        // Another first token, or a later step, is greedy; without the prior "no" wins.
        let paris = logits(&[(PARIS, 0.5), (NO, 0.3), (YES, 0.1)]);
        assert_eq!(next_token(&Toy, &paris, &[], &Sources::default(), &calibrated).unwrap(), PARIS);
        assert_eq!(next_token(&Toy, &read, &[PARIS], &Sources::default(), &calibrated).unwrap(), NO);
        assert_eq!(next_token(&Toy, &read, &[], &Sources::default(), &options(true, true)).unwrap(), NO);
    }

    #[test]
    fn an_answer_repeats_the_question_when_its_words_are_in_it() {
        let question = words("The Findlater Castle, built on a cliff, was modelled on what Scottish castle?");
        assert_eq!(words(" Ada's  CASTLE-2 "), " ada s castle 2 ");
        assert!(repeats("Findlater", &question));
        assert!(repeats("\"findlater castle\".", &question));
        assert!(!repeats("Roslyn Castle", &question));
        // Whole words only, and an empty or punctuation-only answer repeats nothing.
        assert!(!repeats("Find", &question));
        assert!(!repeats("", &question));
        assert!(!repeats(" ?! ", &question));
        // In order and adjacent.
        assert!(!repeats("castle Findlater", &question));
    }

    #[test]
    fn an_answer_is_unquoted_when_its_words_are_not_in_the_text() {
        let text = words("The harbour opened in 1887; Ada Morrow kept its light.");
        assert!(!unquoted("ada morrow", &text));
        assert!(!unquoted("In 1887.", &text));
        assert!(unquoted("Ben Hale", &text));
        assert!(unquoted("Morrow Ada", &text));
        // A bare yes or no quotes nothing but is not an unquoted answer; nor is an empty one.
        assert!(!unquoted("Yes.", &text));
        assert!(!unquoted(" ", &text));
    }

    #[test]
    fn a_copy_replaces_the_answer_when_it_is_whole_words_of_the_text_and_short() {
        let text = words("The harbour of Cities opened in 1887; Ada Morrow kept its light for forty years.");
        assert!(keeps_copy("Ben Hale", "Ada Morrow", &text));
        assert!(keeps_copy("10", "1887", &text));
        assert!(!keeps_copy("Ben Hale", "Ci", &text), "cut inside a word");
        assert!(!keeps_copy("Ben Hale", "Ada Morrow kept", &text.replace(" kept", "")), "not in the text");
        assert!(!keeps_copy("Ben Hale", " ", &text), "empty");
        // Up to three words more than the answer it replaces.
        assert!(keeps_copy("a keeper", "Ada Morrow kept its light", &text));
        assert!(!keeps_copy("a keeper", "Ada Morrow kept its light for", &text));
    }

    #[test]
    fn an_answer_invents_words_when_one_of_them_is_not_in_the_text() {
        let text = words("Ada Morrow built the lighthouse in 1887; it has 835 steps.");
        assert!(!invents_words("ada morrow", &text));
        assert!(!invents_words("Morrow Ada", &text), "the text's words in another order are a reading of it");
        assert!(!invents_words("the steps in the lighthouse", &text));
        assert!(invents_words("Ben Hale", &text));
        assert!(invents_words("10", &text), "a number the text does not hold");
        assert!(invents_words("835 stairs", &text));
        assert!(!invents_words("No.", &text));
        assert!(!invents_words(" ", &text));
    }

    #[test]
    fn extractive_decoding_takes_the_likeliest_token_that_stays_a_span() {
        let source = &Sources { copy: Some(normalise("The 902 steps lead to Paris.\nThe end")), spans: None };
        let greedy = options(true, false);
        // The likeliest candidate when it is a span; the next one that is when it is not ("9 paris").
        let first = logits(&[(STEPS, 0.5), (PARIS, 0.3)]);
        assert_eq!(next_token(&Toy, &first, &[], source, &greedy).unwrap(), STEPS);
        let after_nine = logits(&[(PARIS, 0.5), (ZERO, 0.3)]);
        assert_eq!(next_token(&Toy, &after_nine, &[NINE], source, &greedy).unwrap(), ZERO);
        // A line break keeps the normalised answer a span.
        let dot = logits(&[(NINE, 0.5), (DOT_NEWLINE, 0.3)]);
        assert_eq!(next_token(&Toy, &dot, &[PARIS], source, &greedy).unwrap(), DOT_NEWLINE);
        // End of turn ranked above every token that fits ends the answer.
        let eos_first = logits(&[(STEPS, 0.5), (EOS, 0.3), (PARIS, 0.1)]);
        assert_eq!(next_token(&Toy, &eos_first, &[NINE], source, &greedy).unwrap(), EOS);
    }
}
