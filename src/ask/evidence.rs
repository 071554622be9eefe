//! Where an answer stands in its document: the sentence of the stored text that holds it, so that a
//! user can check the answer against the source instead of taking it on trust.

use crate::decode::{words, yes_or_no};

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
    let wanted = words(answer);
    if wanted.trim().is_empty() || yes_or_no(answer) {
        return None;
    }
    let in_chunk = |chunk: usize, holds: &dyn Fn(&str) -> bool| {
        sentences(&texts[chunk]).find(|s| holds(&words(s))).map(|sentence| Evidence {
            chunk,
            read: read.contains(&chunk),
            sentence: sentence.trim().to_string(),
        })
    };
    let read_chunks = || read.iter().copied().filter(|&i| i < texts.len());
    let unread = (0..texts.len()).filter(|i| !read.contains(i));
    let quoted = read_chunks().chain(unread).find_map(|chunk| in_chunk(chunk, &|s| s.contains(&wanted)));
    quoted.or_else(|| {
        let terms: Vec<String> = wanted.split_whitespace().map(|w| format!(" {w} ")).collect();
        read_chunks().find_map(|chunk| in_chunk(chunk, &|s| terms.iter().all(|t| s.contains(t.as_str()))))
    })
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
fn sentences(text: &str) -> impl Iterator<Item = &str> {
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
