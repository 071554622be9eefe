//! Where an answer stands in its document: the sentence of the stored text that holds it, so that a
//! user can check the answer against the source instead of taking it on trust; and the like facts
//! beside it in the text read, which tell an answer read off the wrong one of them.

use std::collections::HashSet;

use crate::decode::yes_or_no;
use crate::lexical::terms;

/// The sentence of a document that holds an answer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Evidence {
    /// The chunk (0-based) the sentence is in.
    pub chunk: usize,
    /// Whether the decoder read that chunk's text in this prompt (retrieved, or the full document);
    /// false when the answer's words are in the document but elsewhere.
    pub read: bool,
    /// The sentence, trimmed (a chunk's edge may cut it).
    pub sentence: String,
}

/// The first sentence that holds the answer's words, in order and adjacent (letters and digits only,
/// any case): in the chunks the prompt read (`read`, in that order) first, then in the others, in
/// document order. Failing that, the first sentence of a chunk read that holds all the answer's words in
/// another order: the text read supports an answer it words otherwise ("the Congress of the
/// Seventy-seventh Congress" from "Members of the Seventy-seventh Congress"). `None` for an answer
/// without words, a bare "yes" or "no" (not a quote of the text), or one that neither holds.
pub(super) fn find(answer: &str, texts: &[String], read: &[usize]) -> Option<Evidence> {
    let wanted = quoted_words(answer);
    if wanted.trim().is_empty() || yes_or_no(answer) {
        return None;
    }
    let in_chunk = |chunk: usize, holds: &dyn Fn(&str) -> bool| {
        sentences(&texts[chunk]).find(|s| holds(&quoted_words(s))).map(|sentence| Evidence {
            chunk,
            read: read.contains(&chunk),
            sentence: sentence.trim().to_string(),
        })
    };
    let quoted = read_first(read, texts.len()).find_map(|chunk| in_chunk(chunk, &|s| s.contains(&wanted)));
    quoted.or_else(|| {
        let terms: Vec<String> = wanted.split_whitespace().map(|w| format!(" {w} ")).collect();
        let mut read_chunks = read.iter().copied().filter(|&i| i < texts.len());
        read_chunks.find_map(|chunk| in_chunk(chunk, &|s| terms.iter().all(|t| s.contains(t.as_str()))))
    })
}

/// Every chunk of a document of `count` chunks: those the prompt read (`read`, in that order; any beyond
/// the document left out) first, then the others in document order — where a document's own words are
/// looked for.
pub(super) fn read_first(read: &[usize], count: usize) -> impl Iterator<Item = usize> + '_ {
    let unread = (0..count).filter(|i| !read.contains(i));
    read.iter().copied().filter(move |&i| i < count).chain(unread)
}

/// The text's words as [`words`](crate::decode::words) gives them, except that a number stays whole: a
/// `.` or `,` between two digits is part of its word ("15.4", "1,267"), so an answer "4" is not found in
/// "15.4 million" (a bare digit read off a decimal is no quote of the text).
pub(super) fn quoted_words(text: &str) -> String {
    number_words(text, true)
}

/// [`quoted_words`] in the text's own case: names told from common words ("The Guest", "the guest").
pub(super) fn cased_words(text: &str) -> String {
    number_words(text, false)
}

fn number_words(text: &str, lower: bool) -> String {
    let mut out = String::from(" ");
    for (start, end) in word_spans(text) {
        let word = &text[start..end];
        out.push_str(&if lower { word.to_lowercase() } else { word.to_string() });
        out.push(' ');
    }
    out
}

/// The byte spans of the words [`quoted_words`] gives: runs of letters and digits, a `.` or `,` between
/// two digits inside them.
pub(super) fn word_spans(text: &str) -> Vec<(usize, usize)> {
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let digit = |k: usize| chars.get(k).is_some_and(|&(_, c)| c.is_ascii_digit());
    let mut spans = Vec::new();
    let mut start = None;
    for (k, &(i, c)) in chars.iter().enumerate() {
        let in_number = matches!(c, '.' | ',') && k > 0 && digit(k - 1) && digit(k + 1);
        match (c.is_alphanumeric() || in_number, start) {
            (true, None) => start = Some(i),
            (false, Some(from)) => {
                spans.push((from, i));
                start = None;
            }
            _ => {}
        }
    }
    spans.extend(start.map(|from| (from, text.len())));
    spans
}

/// Share of their terms (stopwords and the answer's own left out of the evidence's) that two sentences
/// must have in common to state like facts (see [`like_facts`]); fixed on synthetic needles before
/// measuring on the tuning split ("The lighthouse of Hobart is painted ochre and has 425 steps." and
/// "The lighthouse of Mombasa is painted indigo and has 604 steps." share 0.44).
const LIKE_SHAPE: f64 = 0.3;

/// A sentence of the text read that states a fact like the answer's evidence (see [`like_facts`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct LikeFact {
    pub chunk: usize,
    pub sentence: String,
    /// How it holds the question's terms, against the evidence.
    pub matches: Match,
    /// How many of the question's terms it holds.
    pub held: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Match {
    /// The evidence's question terms, and more: a fact about what the question asks, where the evidence
    /// is about something else.
    Better,
    /// The same question terms, at least one: another fact about the same subject.
    Same,
    /// As many of the question's terms, not the same ones: a fact about another subject the question
    /// names too ("... the lighthouses of Hobart and of Mombasa").
    Beside,
    /// Neither.
    Other,
}

/// The sentences of the chunks read (`read`) that state facts like the answer's `evidence` — they share
/// at least [`LIKE_SHAPE`] of their terms with it, the answer's own left out — each with how it holds
/// the question's terms against the evidence. Several like facts of different subjects ("the
/// lighthouse of Hobart has 425 steps", "... of Mombasa has 604 steps") are where the decoder reads the
/// answer off the wrong one; several of one subject, or of each subject it names, are where a question
/// asks for all of them.
pub(super) fn like_facts(
    evidence: &Evidence,
    answer: &str,
    question: &str,
    texts: &[String],
    read: &[usize],
) -> Vec<LikeFact> {
    let set = |text: &str| -> HashSet<String> { terms(text).into_iter().collect() };
    let asked = set(question);
    let stated = set(&evidence.sentence);
    let covered: HashSet<&String> = stated.intersection(&asked).collect();
    let shape: HashSet<String> = stated.difference(&set(answer)).cloned().collect();
    let mut found = Vec::new();
    for &chunk in read.iter().filter(|&&i| i < texts.len()) {
        for sentence in sentences(&texts[chunk]) {
            let sentence = sentence.trim();
            let other = set(sentence);
            let union = shape.union(&other).count();
            let alike = union > 0 && shape.intersection(&other).count() as f64 / union as f64 >= LIKE_SHAPE;
            if !alike || (chunk == evidence.chunk && sentence == evidence.sentence) {
                continue;
            }
            let holds: HashSet<&String> = other.intersection(&asked).collect();
            let matches = if holds.len() > covered.len() && covered.is_subset(&holds) {
                Match::Better
            } else if holds == covered && !covered.is_empty() {
                Match::Same
            } else if holds.len() == covered.len() && !covered.is_empty() {
                Match::Beside
            } else {
                Match::Other
            };
            found.push(LikeFact { chunk, sentence: sentence.to_string(), matches, held: holds.len() });
        }
    }
    found
}

/// How many of the question's terms (`lexical::terms`) the sentence holds.
pub(super) fn held(sentence: &str, question: &str) -> usize {
    let asked: HashSet<String> = terms(question).into_iter().collect();
    terms(sentence).into_iter().collect::<HashSet<String>>().intersection(&asked).count()
}

/// Of the [`like_facts`], the one about the question's subject where the evidence is about another:
/// the `Better` one that holds most of the question's terms (the first of equals, in the order read).
pub(super) fn parallel(facts: &[LikeFact]) -> Option<usize> {
    facts.iter().filter(|f| f.matches == Match::Better).rev().max_by_key(|f| f.held).map(|f| f.chunk)
}

/// Titles that a full stop ends without ending the sentence ("Mr. Smith", "St. Mary's"); with initials
/// ("J. Edward Snyder", "George W. Bush"), see [`sentences`].
const TITLES: [&str; 20] = [
    "mr", "mrs", "ms", "dr", "st", "jr", "sr", "mt", "ft", "gen", "col", "lt", "capt", "adm", "rev", "prof", "gov",
    "sen", "rep", "hon",
];

/// The text cut after each `.`, `!` or `?` that whitespace follows, and at line breaks — but not after a
/// full stop that ends an initial (one capital letter) or a title of [`TITLES`], which would cut a name
/// in two; pieces without letters or digits are skipped.
pub(super) fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut cuts = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_space = chars.peek().is_some_and(|&(_, n)| n.is_whitespace());
        let stop = match c {
            '\n' => true,
            '!' | '?' => next_is_space,
            '.' => next_is_space && !abbreviation(&text[start..i]),
            _ => false,
        };
        if stop {
            let end = i + c.len_utf8();
            cuts.push(&text[start..end]);
            start = end;
        }
    }
    cuts.push(&text[start..]);
    cuts.into_iter().filter(|s| s.chars().any(char::is_alphanumeric))
}

/// True when the last word of `before` (the text up to a full stop) is an initial or a title.
fn abbreviation(before: &str) -> bool {
    let word = before.rsplit(|c: char| !c.is_alphanumeric()).next().unwrap_or("");
    let mut letters = word.chars();
    let initial = matches!((letters.next(), letters.next()), (Some(first), None) if first.is_uppercase());
    initial || TITLES.iter().any(|t| word.eq_ignore_ascii_case(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts() -> Vec<String> {
        vec![
            "The canal opened in 1835. It was built by Thomas Telford!\nIt closed in 1944.".to_string(),
            "Later, the Shropshire Union Canal took it over. Telford died in 1834.".to_string(),
        ]
    }

    #[test]
    fn the_sentence_holding_the_answer_is_found_in_the_chunks_read_first() {
        let found = find("Thomas Telford", &texts(), &[0]).unwrap();
        assert_eq!(found, Evidence { chunk: 0, read: true, sentence: "It was built by Thomas Telford!".into() });
        // Case, punctuation and a line break do not matter; whole words do.
        assert_eq!(find("the shropshire-union canal.", &texts(), &[1]).unwrap().chunk, 1);
        assert_eq!(find("1944", &texts(), &[0]).unwrap().sentence, "It closed in 1944.");
        assert!(find("Telf", &texts(), &[0, 1]).is_none());
        // "Telford" is in both chunks: the one read wins, then document order.
        assert_eq!(find("Telford", &texts(), &[1]).unwrap().sentence, "Telford died in 1834.");
        assert_eq!(
            find("Telford", &texts(), &[]).unwrap(),
            Evidence { chunk: 0, read: false, sentence: "It was built by Thomas Telford!".into() }
        );
    }

    #[test]
    fn answers_without_a_quote_in_the_document_have_none() {
        assert!(find("Roslyn Castle", &texts(), &[0, 1]).is_none());
        assert!(find("", &texts(), &[0]).is_none());
        assert!(find(" ?! ", &texts(), &[0]).is_none());
        assert!(find("Yes", &[String::from("Yes, it was.")], &[0]).is_none());
        // A chunk index beyond the document is ignored.
        assert!(find("1835", &texts(), &[7]).is_some_and(|e| e.chunk == 0 && !e.read));
    }

    #[test]
    fn numbers_are_quoted_whole() {
        let texts = vec!["It spans 15.4 million acres. Its 1,267 steps date from 1911.".to_string()];
        assert_eq!(
            quoted_words("Spans 15.4 million, 1,267 steps. 3.5, a.b"),
            " spans 15.4 million 1,267 steps 3.5 a b "
        );
        assert!(find("15.4 million", &texts, &[0]).is_some());
        assert!(find("1,267", &texts, &[0]).is_some());
        // A digit read off a decimal, or part of a number, is no quote of it.
        assert!(find("4", &texts, &[0]).is_none());
        assert!(find("267", &texts, &[0]).is_none());
        assert!(find("1911", &texts, &[0]).is_some());
    }

    #[test]
    fn an_answer_worded_otherwise_has_the_read_sentence_that_holds_its_words() {
        let texts = texts();
        let found = find("Telford, Thomas", &texts, &[0]).unwrap();
        assert_eq!(found, Evidence { chunk: 0, read: true, sentence: "It was built by Thomas Telford!".into() });
        assert_eq!(
            find("canal union", &texts, &[0, 1]).unwrap().sentence,
            "Later, the Shropshire Union Canal took it over."
        );
        // The words must share one sentence of a chunk that was read, as whole words.
        assert!(find("Telford opened", &texts, &[0, 1]).is_none());
        assert!(find("canal Shropshire", &texts, &[0]).is_none());
        assert_eq!(find("canal Shropshire", &texts, &[0, 1]).unwrap().chunk, 1);
        assert!(find("Telf Thomas", &texts, &[0, 1]).is_none());
    }

    #[test]
    fn like_facts_are_told_apart_by_the_question_terms_they_hold() {
        let texts = vec![
            "The lighthouse of Hobart is painted ochre and has 425 steps. Hobart lies in Tasmania.".to_string(),
            "Trade grew. The lighthouse of Mombasa is painted indigo and has 604 steps.".to_string(),
            "The lighthouse of Galway is painted red and has 300 steps. The lighthouse of Hobart has 12 steps too."
                .to_string(),
        ];
        let question = "How many steps does the lighthouse of Mombasa have?";
        let evidence = find("425", &texts, &[0, 1, 2]).unwrap();
        let facts = like_facts(&evidence, "425", question, &texts, &[0, 1, 2]);
        let of = |m: Match| facts.iter().filter(|f| f.matches == m).map(|f| f.chunk).collect::<Vec<_>>();
        // Mombasa's holds the question's terms and more; Galway's and Hobart's other fact hold the same.
        assert_eq!((of(Match::Better), of(Match::Same), of(Match::Other)), (vec![1], vec![2, 2], vec![]));
        assert_eq!(facts[0].sentence, "The lighthouse of Mombasa is painted indigo and has 604 steps.");
        assert_eq!(parallel(&facts), Some(1));
        // A question that names two subjects: the other one's fact holds as many of its terms, other ones.
        let both = "How many steps do the lighthouse of Hobart and the lighthouse of Mombasa have?";
        let facts = like_facts(&evidence, "425", both, &texts, &[0, 1, 2]);
        let of = |m: Match| facts.iter().filter(|f| f.matches == m).map(|f| f.chunk).collect::<Vec<_>>();
        assert_eq!((of(Match::Beside), of(Match::Same), of(Match::Other)), (vec![1], vec![2], vec![2]));
        assert_eq!(parallel(&facts), None);
        // Only the text read counts; the right fact needs no other.
        assert_eq!(parallel(&like_facts(&evidence, "425", question, &texts, &[0, 2])), None);
        let right = find("604", &texts, &[0, 1, 2]).unwrap();
        assert_eq!(parallel(&like_facts(&right, "604", question, &texts, &[0, 1, 2])), None);
        // A sentence of another shape states no like fact, however many of the question's terms it holds.
        let unlike = vec![texts[0].clone(), "Mombasa has many steps and a lighthouse, they say.".to_string()];
        assert!(like_facts(&evidence, "425", question, &unlike, &[0, 1]).is_empty());
    }

    #[test]
    fn sentences_end_at_stops_before_whitespace_and_at_line_breaks() {
        let cut: Vec<&str> = sentences("Dr. Who. 3.5 m high! Yes?\nEnd").collect();
        assert_eq!(cut, ["Dr. Who.", " 3.5 m high!", " Yes?", "End"]);
        // Initials and titles do not end a sentence; a lower-case one-letter word or another word does.
        let cut: Vec<&str> = sentences("It was built by J. Edward Snyder. Mr. Smith saw plan b. It rained").collect();
        assert_eq!(cut, ["It was built by J. Edward Snyder.", " Mr. Smith saw plan b.", " It rained"]);
        let texts = [String::from("It was built by J. Edward Snyder. It rained.")];
        assert_eq!(find("J. Edward Snyder", &texts, &[0]).unwrap().sentence, "It was built by J. Edward Snyder.");
        assert_eq!(sentences(" . \n").count(), 0);
    }
}
