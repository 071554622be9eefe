//! The adapter is refused unless it matches the loaded encoder and decoder; with the shipped
//! adapter, `compressed` and `hybrid` answer with one soft token per chunk.

mod common;

use e2llm::adapt::Adapter;
use e2llm::manifest::{AdapterSpec, Manifest};
use e2llm::Error;

fn spec_for(manifest: &Manifest) -> AdapterSpec {
    AdapterSpec {
        file: "adapter.onnx".into(),
        encoder_dim: manifest.encoder.dim,
        hidden: manifest.decoder.hidden,
        encoder_fingerprint: manifest.encoder.fingerprint.clone(),
        decoder_fingerprint: manifest.decoder.fingerprint.clone(),
        source: "test".into(),
    }
}

#[test]
fn mismatched_adapters_are_refused_with_the_reason() {
    let mut manifest = Manifest::load(&common::models_dir()).unwrap();
    manifest.adapter = Some(spec_for(&manifest));
    assert!(Adapter::check(&manifest).is_ok());

    type Breakage = fn(&mut AdapterSpec);
    let cases: [(&str, Breakage); 4] = [
        ("encoder dim", |s| s.encoder_dim = 768),
        ("decoder hidden size", |s| s.hidden = 4096),
        ("encoder fingerprint", |s| s.encoder_fingerprint = "0000".into()),
        ("decoder fingerprint", |s| s.decoder_fingerprint = "ffff".into()),
    ];
    for (what, break_it) in cases {
        let mut spec = spec_for(&manifest);
        break_it(&mut spec);
        manifest.adapter = Some(spec);
        let err = Adapter::check(&manifest).unwrap_err();
        assert!(matches!(err, Error::AdapterMismatch { .. }), "{what}: {err}");
        assert!(err.to_string().contains(what), "{err}");
    }
    manifest.adapter = None;
    assert!(matches!(Adapter::check(&manifest), Err(Error::AdapterMissing { .. })));
}

#[test]
fn compressed_and_hybrid_use_one_soft_token_per_chunk() {
    let engine = common::engine();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("t.db");
    let mut store = e2llm::store::Store::open(&db).unwrap();
    let inputs = [common::examples_dir().join("1941-Roosevelt-1.txt")];
    e2llm::compress::compress(engine, e2llm::compress::Target::Database(&mut store), &inputs, &Default::default())
        .unwrap();
    let doc_id = inputs[0].to_string_lossy().into_owned();
    let chunks = store.reader().document(&doc_id).unwrap().n_chunks;
    let ask = |mode| {
        engine.ask(
            &store.reader(),
            &doc_id,
            "Which Congress is addressed?",
            // Both top-2 chunks read, whatever their scores (no relevance floor).
            &e2llm::AskOptions { mode, max_new_tokens: 4, top_k: 2, min_relevance: 0.0, ..Default::default() },
        )
    };
    let bare = ask(e2llm::Mode::QuestionOnly).unwrap();
    match engine.manifest().adapter {
        Some(_) => {
            let compressed = ask(e2llm::Mode::Compressed).unwrap();
            assert_eq!(compressed.prompt_tokens, bare.prompt_tokens + chunks + context_frame(engine));
            let hybrid = ask(e2llm::Mode::Hybrid).unwrap();
            assert_eq!(hybrid.chunks.len(), 2);
            assert!(hybrid.prompt_tokens > compressed.prompt_tokens + 100);
        }
        None => {
            for mode in [e2llm::Mode::Compressed, e2llm::Mode::Hybrid] {
                assert!(matches!(ask(mode), Err(Error::AdapterMissing { .. })));
            }
        }
    }
}

/// Tokens of the context block's frame (`context_prefix`, `context_suffix`) around the soft tokens.
fn context_frame(engine: &e2llm::Engine) -> usize {
    let decoder = engine.decoder().unwrap();
    let prompt = &engine.manifest().prompt;
    decoder.tokenize(&prompt.context_prefix).unwrap().len() + decoder.tokenize(&prompt.context_suffix).unwrap().len()
}
