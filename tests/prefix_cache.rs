//! The prefix KV cache: a second question about the same document prefills only the question,
//! and answers exactly as a fresh prefill would.

mod common;

use e2llm::{AskOptions, Mode};

#[test]
fn cached_prefix_gives_the_same_answers_as_a_fresh_prefill() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let mut store = e2llm::store::Store::open(&dir.path().join("t.db")).unwrap();
    let inputs =
        [common::examples_dir().join("1941-Roosevelt-1.txt"), common::examples_dir().join("1823-Monroe-1.txt")];
    e2llm::compress::compress(engine, e2llm::compress::Target::Database(&mut store), &inputs, &Default::default())
        .unwrap();
    let [roosevelt, monroe] = inputs.map(|p| p.to_string_lossy().into_owned());
    let reader = store.reader();
    let mut modes = vec![Mode::Full];
    if engine.manifest().adapter.is_some() {
        modes.push(Mode::Compressed);
    }
    for mode in modes {
        let cached = AskOptions { mode, max_new_tokens: 6, top_k: 2, ..Default::default() };
        let fresh = AskOptions { prefix_cache: false, ..cached.clone() };
        let first = engine.ask(&reader, &roosevelt, "Which Congress is addressed?", &cached).unwrap();
        let second = engine.ask(&reader, &roosevelt, "What are the four freedoms?", &cached).unwrap();
        let reference = engine.ask(&reader, &roosevelt, "What are the four freedoms?", &fresh).unwrap();
        assert!(second.prefix_cache_hit, "{mode:?}: the second question did not reuse the prefix");
        assert!(!reference.prefix_cache_hit);
        assert_eq!(second.answer, reference.answer, "{mode:?}");
        assert_eq!(second.generated_tokens, reference.generated_tokens, "{mode:?}");
        assert_eq!(second.prompt_tokens, reference.prompt_tokens, "{mode:?}");
        // Another document never hits this one's prefix.
        let other = engine.ask(&reader, &monroe, "What are the four freedoms?", &cached).unwrap();
        assert!(!other.prefix_cache_hit, "{mode:?}: a different document hit the cache");
        assert!(first.answer.len() + other.answer.len() > 0);
    }
    // Retrieval depends on the question: rag, and hybrid (whose soft tokens are the chunks retrieval did
    // not choose), never claim a hit.
    let mut retrieving = vec![Mode::Rag];
    if engine.manifest().adapter.is_some() {
        retrieving.push(Mode::Hybrid);
    }
    for mode in retrieving {
        let options = AskOptions { mode, max_new_tokens: 2, top_k: 2, ..Default::default() };
        for _ in 0..2 {
            let answer = engine.ask(&reader, &roosevelt, "Which Congress is addressed?", &options).unwrap();
            assert!(!answer.prefix_cache_hit, "{mode:?} claimed a prefix cache hit");
        }
    }
}
