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
/// document order. `None` for an answer without words, a bare "yes" or "no" (not a quote of the text),
/// or one whose words are nowhere in the document.
pub(super) fn find(answer: &str, texts: &[String], read: &[usize]) -> Option<Evidence> {
    let wanted = words(answer);
    if wanted.trim().is_empty() || yes_or_no(answer) {
        return None;
    }
    let unread = (0..texts.len()).filter(|i| !read.contains(i));
    read.iter().copied().filter(|&i| i < texts.len()).chain(unread).find_map(|chunk| {
        sentences(&texts[chunk]).find(|s| words(s).contains(&wanted)).map(|sentence| Evidence {
            chunk,
            read: read.contains(&chunk),
            sentence: sentence.trim().to_string(),
        })
    })
}

/// True when every word of `answer` is a word of one sentence of a chunk the prompt read (`read`), in
/// any order: the text read supports an answer worded otherwise ("the Congress of the Seventy-seventh
/// Congress" from "Members of the Seventy-seventh Congress"), which [`find`] does not accept as a quote.
/// False for an answer without words.
pub(super) fn words_in_one_read_sentence(answer: &str, texts: &[String], read: &[usize]) -> bool {
    let wanted = words(answer);
    let wanted: Vec<&str> = wanted.split_whitespace().collect();
    !wanted.is_empty()
        && read.iter().filter_map(|&i| texts.get(i)).any(|text| {
            sentences(text).any(|s| {
                let have = words(s);
                wanted.iter().all(|w| have.contains(&format!(" {w} ")))
            })
        })
}

/// The text cut after each `.`, `!` or `?` that whitespace follows, and at line breaks; pieces
/// without letters or digits are skipped.
fn sentences(text: &str) -> impl Iterator<Item = &str> {
    let mut start = 0;
    let mut cuts = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let next_is_space = chars.peek().is_some_and(|&(_, n)| n.is_whitespace());
        if c == '\n' || (matches!(c, '.' | '!' | '?') && next_is_space) {
            let end = i + c.len_utf8();
            cuts.push(&text[start..end]);
            start = end;
        }
    }
    cuts.push(&text[start..]);
    cuts.into_iter().filter(|s| s.chars().any(char::is_alphanumeric))
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
    fn an_answer_worded_otherwise_is_supported_when_one_read_sentence_holds_its_words() {
        let texts = texts();
        assert!(words_in_one_read_sentence("Telford, Thomas", &texts, &[0]));
        assert!(words_in_one_read_sentence("the canal opened", &texts, &[0]));
        // The words must share one sentence, of a chunk that was read, as whole words.
        assert!(!words_in_one_read_sentence("Telford opened", &texts, &[0, 1]));
        assert!(!words_in_one_read_sentence("Shropshire canal", &texts, &[0]));
        assert!(words_in_one_read_sentence("Shropshire canal", &texts, &[0, 1]));
        assert!(!words_in_one_read_sentence("Telf", &texts, &[0, 1]));
        assert!(!words_in_one_read_sentence(" ?! ", &texts, &[0, 1]));
        assert!(!words_in_one_read_sentence("1835", &texts, &[7]));
    }

    #[test]
    fn sentences_end_at_stops_before_whitespace_and_at_line_breaks() {
        let cut: Vec<&str> = sentences("Dr. Who. 3.5 m high! Yes?\nEnd").collect();
        assert_eq!(cut, ["Dr.", " Who.", " 3.5 m high!", " Yes?", "End"]);
        assert_eq!(sentences(" . \n").count(), 0);
    }
}
