//! Chunker invariants on the real encoder tokenizer, property-tested.

mod common;

use e2llm::chunk::Chunker;
use proptest::prelude::*;
use tokenizers::Tokenizer;

fn tokenizer() -> &'static Tokenizer {
    static TOKENIZER: std::sync::OnceLock<Tokenizer> = std::sync::OnceLock::new();
    TOKENIZER.get_or_init(|| {
        Tokenizer::from_file(common::models_dir().join("encoder_tokenizer.json")).expect("encoder tokenizer loads")
    })
}

fn check_invariants(text: &str, chunk_tokens: usize) -> Result<(), TestCaseError> {
    let chunker = Chunker::new(tokenizer(), chunk_tokens).unwrap();
    let chunks = chunker.chunk(text).unwrap();
    let all = tokenizer().encode(text, false).unwrap();
    let ids = all.get_ids();
    if ids.is_empty() {
        prop_assert!(chunks.is_empty());
        return Ok(());
    }
    // Every token in exactly one chunk: token spans tile [0, n) in order.
    let mut next_token = 0;
    let mut next_byte = 0;
    for (seq, chunk) in chunks.iter().enumerate() {
        prop_assert_eq!(chunk.seq, seq);
        prop_assert_eq!(chunk.token_start, next_token);
        prop_assert!(chunk.token_end > chunk.token_start);
        // At most `chunk_tokens`, unless the chunk is one character longer than that by itself.
        let offsets = &all.get_offsets()[chunk.token_start..chunk.token_end];
        let one_character = offsets.iter().all(|&(start, _)| start == offsets[0].0);
        prop_assert!(chunk.token_end - chunk.token_start <= chunk_tokens || one_character);
        prop_assert_eq!(&chunk.ids[..], &ids[chunk.token_start..chunk.token_end]);
        // Spans map back to the text: byte ranges tile the document on char boundaries.
        prop_assert_eq!(chunk.byte_start, next_byte);
        prop_assert!(text.is_char_boundary(chunk.byte_start) && text.is_char_boundary(chunk.byte_end));
        // Every token of the chunk lies inside its byte span.
        for &(start, end) in &all.get_offsets()[chunk.token_start..chunk.token_end] {
            prop_assert!(start >= chunk.byte_start && end <= chunk.byte_end);
        }
        next_token = chunk.token_end;
        next_byte = chunk.byte_end;
    }
    prop_assert_eq!(next_token, ids.len());
    prop_assert_eq!(next_byte, text.len());
    let joined: String = chunks.iter().map(|c| c.text(text)).collect();
    prop_assert_eq!(joined, text);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn chunks_tile_tokens_and_text(
        text in r"([A-Za-zéüß漢字경한0-9]{1,14}[ ,;:]?( |\n|\. |\? |! |\n\n|\t|—)?){0,300}",
        chunk_tokens in 1usize..48,
    ) {
        check_invariants(&text, chunk_tokens)?;
    }

    #[test]
    fn arbitrary_unicode_never_breaks_invariants(text in any::<String>(), chunk_tokens in 1usize..16) {
        check_invariants(&text, chunk_tokens)?;
    }
}

#[test]
fn sentences_are_kept_whole_when_they_fit() {
    let text = "The first sentence is short. The second one is short too. A third follows here.";
    let chunker = Chunker::new(tokenizer(), 10).unwrap();
    let chunks = chunker.chunk(text).unwrap();
    let texts: Vec<&str> = chunks.iter().map(|c| c.text(text).trim()).collect();
    assert_eq!(texts, vec!["The first sentence is short.", "The second one is short too.", "A third follows here."]);
}

#[test]
fn a_character_of_several_tokens_is_never_cut() {
    // "경" is three tokens (its jamo) sharing one byte span: a chunk ends before or after it.
    for chunk_tokens in 1..=4 {
        check_invariants("경A", chunk_tokens).unwrap();
        check_invariants("A 경경 B, 경A.", chunk_tokens).unwrap();
    }
    let chunker = Chunker::new(tokenizer(), 2).unwrap();
    let texts: Vec<&str> = chunker.chunk("경A").unwrap().iter().map(|c| c.text("경A")).collect::<Vec<_>>();
    assert_eq!(texts, vec!["경", "A"]);
}

#[test]
fn long_words_are_cut_between_tokens_only() {
    let text = "Pneumonoultramicroscopicsilicovolcanoconiosis ".repeat(20);
    check_invariants(&text, 3).unwrap();
}

#[test]
fn example_corpus_chunks_respect_the_default_size() {
    let chunker = Chunker::new(tokenizer(), e2llm::chunk::DEFAULT_CHUNK_TOKENS).unwrap();
    for entry in std::fs::read_dir(common::examples_dir()).unwrap() {
        let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
        let chunks = chunker.chunk(&text).unwrap();
        assert!(chunks.len() > 5);
        assert!(chunks.iter().all(|c| c.ids.len() <= 128));
        // Sentence-aware packing keeps chunks reasonably full.
        let mean = chunks.iter().map(|c| c.ids.len()).sum::<usize>() as f64 / chunks.len() as f64;
        assert!(mean > 80.0, "mean chunk length {mean}");
        check_invariants(&text, 128).unwrap();
    }
}
