//! Retrieval for rag and hybrid: a one-sentence needle inside a long document is found by the lexical
//! and fused rankings, whatever the depth, and kept alone by a relevance floor; the option is accepted from
//! SQL and rejected when unknown.

mod common;

use e2llm::{AskOptions, Mode, Retrieval};

#[test]
fn needles_are_retrieved_at_every_depth() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let mut store = e2llm::store::Store::open(&dir.path().join("t.db")).unwrap();
    let haystack = std::fs::read_to_string(common::examples_dir().join("1941-Roosevelt-1.txt")).unwrap();
    let paragraphs: Vec<&str> = haystack.split("\n\n").filter(|p| !p.trim().is_empty()).collect();
    let needle = "The harbour lighthouse of Trondheim is painted ochre and has 417 steps.";
    let mut inputs = Vec::new();
    for depth in [0.0, 0.5, 1.0] {
        let mut parts = paragraphs.clone();
        parts.insert((depth * parts.len() as f64).round() as usize, needle);
        let path = dir.path().join(format!("needle-{depth}.txt"));
        std::fs::write(&path, parts.join("\n\n")).unwrap();
        inputs.push(path);
    }
    e2llm::compress::compress(engine, e2llm::compress::Target::Database(&mut store), &inputs, &Default::default())
        .unwrap();
    let reader = store.reader();
    let question = "How many steps does the harbour lighthouse of Trondheim have?";
    for input in &inputs {
        let doc = input.to_string_lossy();
        let chunks = reader.chunks(&reader.document(&doc).unwrap()).unwrap();
        assert!(chunks.texts.len() > 20, "the haystack is long enough to need retrieval");
        let holding: Vec<usize> = (0..chunks.texts.len()).filter(|&i| chunks.texts[i].contains("417 steps")).collect();
        for retrieval in [Retrieval::Lexical, Retrieval::Fused] {
            let options = AskOptions {
                mode: Mode::Rag,
                max_new_tokens: 1,
                top_k: 2,
                retrieval,
                min_relevance: 0.0,
                ..Default::default()
            };
            let answer = engine.ask(&reader, &doc, question, &options).unwrap();
            assert_eq!(answer.chunks.len(), 2);
            assert!(
                answer.chunks.iter().any(|c| holding.contains(c)),
                "{retrieval:?} missed the needle in {doc}: chose {:?}, needle in {holding:?}",
                answer.chunks
            );
            // The speech shares no rare term with the question: a relevance floor leaves the needle alone.
            let focused = AskOptions { min_relevance: 0.5, ..options };
            let answer = engine.ask(&reader, &doc, question, &focused).unwrap();
            assert!(
                !answer.chunks.is_empty() && answer.chunks.iter().all(|c| holding.contains(c)),
                "{retrieval:?} with min_relevance 0.5 chose {:?}, needle in {holding:?}",
                answer.chunks
            );
        }
    }
}

#[test]
fn retrieval_option_from_sql() {
    let options = e2llm::sql::parse_options(Some(r#"{"mode": "hybrid", "retrieval": "lexical"}"#)).unwrap();
    assert_eq!(options.retrieval, Retrieval::Lexical);
    assert_eq!(e2llm::sql::parse_options(None).unwrap().retrieval, e2llm::ask::DEFAULT_RETRIEVAL);
    for bad in [r#"{"retrieval": "psychic"}"#, r#"{"retrieval": 3}"#] {
        let message = e2llm::sql::parse_options(Some(bad)).unwrap_err().to_string();
        assert!(message.contains("retrieval"), "{bad}: {message}");
    }
}
