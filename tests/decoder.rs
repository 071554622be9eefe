//! The Rust decoder (embed + KV-cache generation) reproduces the NumPy reference's greedy tokens.

mod common;

use e2llm::decode::{words, yes_or_no, GenerateOptions, Piece};

#[test]
fn greedy_generation_matches_golden() {
    let golden = common::golden();
    let cases = golden["decoder"].as_array().expect("golden.decoder is a list");
    assert!(!cases.is_empty());
    let decoder = common::engine().decoder().unwrap();
    for case in cases {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids: Vec<u32> =
            case["prompt_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(decoder.tokenize(prompt).unwrap(), prompt_ids, "tokenisation of {prompt:?}");
        let expected: Vec<u32> =
            case["greedy_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let generation =
            decoder.generate(&[Piece::Text(prompt.to_string())], &GenerateOptions::new(expected.len())).unwrap();
        // The reference may stop at EOS earlier; compare the common prefix and require it complete.
        assert_eq!(generation.token_ids, expected[..generation.token_ids.len()].to_vec(), "prompt {prompt:?}");
        assert!(
            generation.token_ids.len() == expected.len()
                || decoder.spec().eos_token_ids.contains(&expected[generation.token_ids.len()])
        );
        assert_eq!(generation.prompt_tokens, prompt_ids.len());
    }
}

#[test]
fn soft_tokens_and_text_give_the_same_result_for_the_same_embeddings() {
    // A prompt given as text, and the same prompt given as its embedding rows, must decode alike.
    let decoder = common::engine().decoder().unwrap();
    let text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let ids = decoder.tokenize(text).unwrap();
    let rows = decoder.embed_tokens(&ids).unwrap();
    let options = GenerateOptions::new(8);
    let from_text = decoder.generate(&[Piece::Text(text.into())], &options).unwrap();
    let from_rows = decoder.generate(&[Piece::Embeds(rows)], &options).unwrap();
    assert_eq!(from_text.token_ids, from_rows.token_ids);
    assert!(from_text.text.contains("Paris"), "{:?}", from_text.text);
}

#[test]
fn sliced_prefill_equals_one_pass_prefill() {
    // A long prompt prefilled in slices (KV cache carried between them) decodes exactly like the
    // same prompt prefilled in one pass.
    let decoder = common::engine().decoder().unwrap();
    let filler = "The quick brown fox jumps over the lazy dog. ".repeat(60);
    let prompt =
        vec![Piece::Text(format!("<|im_start|>user\n{filler}\nWhat animal jumps?<|im_end|>\n<|im_start|>assistant\n"))];
    let one_pass =
        decoder.generate(&prompt, &GenerateOptions { prefill_slice: 4096, ..GenerateOptions::new(6) }).unwrap();
    let sliced = decoder.generate(&prompt, &GenerateOptions { prefill_slice: 100, ..GenerateOptions::new(6) }).unwrap();
    assert!(one_pass.prompt_tokens > 500);
    assert!(!one_pass.token_ids.is_empty());
    assert_eq!(one_pass.token_ids, sliced.token_ids);
}

#[test]
fn prompt_beyond_the_window_is_refused() {
    let decoder = common::engine().decoder().unwrap();
    let ids = vec![100u32; decoder.context_length()];
    let err = decoder.generate(&[Piece::Tokens(ids)], &GenerateOptions::new(1)).unwrap_err();
    assert!(err.to_string().contains("exceeds the decoder's context"), "{err}");
}

fn normalised(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

#[test]
fn stop_at_newline_keeps_the_first_line() {
    // Whatever the weights, the stopped answer is the unstopped one's first non-blank line; at least
    // one of these prompts must run past a line break (else the check says nothing).
    let decoder = common::engine().decoder().unwrap();
    let prompts = ["The capital of France is", "1. Apples\n2. Pears\n3.", "def add(a, b):\n    return a + b\n\ndef"];
    let mut broke = 0;
    for prompt in prompts {
        let pieces = [Piece::Text(prompt.into())];
        let free = decoder.generate(&pieces, &GenerateOptions::new(24)).unwrap();
        let stopped =
            decoder.generate(&pieces, &GenerateOptions { stop_at_newline: true, ..GenerateOptions::new(24) }).unwrap();
        let first_line = free.text.lines().find(|l| !l.trim().is_empty()).unwrap_or("").trim();
        assert_eq!(stopped.text, first_line, "prompt {prompt:?}: free {:?}", free.text);
        assert!(!stopped.text.contains('\n'));
        broke += usize::from(free.text.trim().contains('\n'));
    }
    assert!(broke > 0, "no prompt generated a line break: the stop was never exercised");
}

#[test]
fn extractive_answers_are_spans_of_the_source() {
    let decoder = common::engine().decoder().unwrap();
    let source = "The harbour light at Kestrel Point was kept by Ada Morrow from 1881 to 1919.";
    let prompt =
        format!("<|im_start|>user\n{source}\nWho kept the harbour light, and when?<|im_end|>\n<|im_start|>assistant\n");
    let options = GenerateOptions { copy_from: Some(source.into()), ..GenerateOptions::new(16) };
    let answer = decoder.generate(&[Piece::Text(prompt)], &options).unwrap();
    assert!(!answer.text.is_empty());
    assert!(normalised(source).contains(&normalised(&answer.text)), "{:?} is not a span of the source", answer.text);
}

/// The chat prompt of a short answer about `document`, as the tests below send it.
fn short_answer_prompt(document: &str, question: &str) -> String {
    format!(
        "<|im_start|>system\nAnswer the question using the document. Reply with a short answer.<|im_end|>\n\
         <|im_start|>user\nDocument:\n{document}\n\nQuestion: {question}<|im_end|>\n<|im_start|>assistant\n"
    )
}

#[test]
fn whole_numbers_only_extend_an_answer_that_ends_after_a_digit() {
    // Whatever the weights: with `whole_numbers` the answer is the plain one, or the plain one that
    // ended right after a digit followed by more. At least one prompt must be extended (else the rule
    // was never exercised): the shipped decoder ends some of these numbers after their first digit.
    let decoder = common::engine().decoder().unwrap();
    let mut extended = 0;
    for (city, steps) in [("Nagasaki", 902), ("Mombasa", 243), ("Trondheim", 583), ("Cusco", 423), ("Hobart", 697)] {
        let document = format!("The harbour lighthouse of {city} is painted ochre and has {steps} steps.");
        let question = format!("How many steps does the harbour lighthouse of {city} have?");
        let pieces = [Piece::Text(short_answer_prompt(&document, &question))];
        let base = GenerateOptions { stop_at_newline: true, ..GenerateOptions::new(12) };
        let cut = decoder.generate(&pieces, &base).unwrap();
        let whole = decoder.generate(&pieces, &GenerateOptions { whole_numbers: true, ..base }).unwrap();
        if whole.token_ids != cut.token_ids {
            assert!(whole.token_ids.starts_with(&cut.token_ids), "{:?} does not extend {:?}", whole.text, cut.text);
            assert!(
                cut.text.ends_with(|c: char| c.is_ascii_digit()),
                "extended {:?}, which ends in no digit",
                cut.text
            );
            extended += 1;
        }
        println!("{city} {steps}: cut {:?}, whole {:?}", cut.text, whole.text);
    }
    assert!(extended > 0, "no answer was extended: the rule was never exercised");
}

#[test]
fn the_extractive_fallback_only_replaces_answers_with_words_the_document_lacks() {
    // Whatever the weights: with `extractive_fallback` the answer is the plain one when the plain one
    // is made of the document's words (or is yes/no), else the plain one or whole words of the document. The
    // questions ask what the document does not say, so some plain answers are made up: at least one
    // must be replaced (else the rule was never exercised).
    let decoder = common::engine().decoder().unwrap();
    let mut replaced = 0;
    for (city, question) in [
        ("Nagasaki", "Who built the harbour lighthouse?"),
        ("Mombasa", "Which company painted the lighthouse?"),
        ("Trondheim", "Who was the first keeper of the lighthouse?"),
        ("Cusco", "What is the name of the architect of the lighthouse?"),
    ] {
        let document = format!("The harbour lighthouse of {city} is painted ochre and stands on the north pier.");
        let pieces = [Piece::Text(short_answer_prompt(&document, question))];
        let base =
            GenerateOptions { stop_at_newline: true, prompt_text: Some(document.clone()), ..GenerateOptions::new(12) };
        let plain = decoder.generate(&pieces, &base).unwrap();
        let fallback = decoder.generate(&pieces, &GenerateOptions { extractive_fallback: true, ..base }).unwrap();
        let document_words = words(&document);
        let own_words = words(&plain.text);
        let reads_document = own_words.split_whitespace().all(|w| document_words.contains(&format!(" {w} ")));
        assert_eq!(plain.replaced, None, "{city}: without the fallback nothing is replaced");
        // The decoder's own answer is reported exactly when the copy replaced it.
        let expected = (fallback.text != plain.text).then(|| plain.text.clone());
        assert_eq!(fallback.replaced, expected, "{city}: the replaced answer is not reported as such");
        if reads_document || yes_or_no(&plain.text) {
            assert_eq!(fallback.text, plain.text, "{city}: an answer made of the document's words was replaced");
        } else if fallback.text != plain.text {
            assert!(
                document_words.contains(&words(&fallback.text)),
                "{city}: {:?} is not whole words of the document",
                fallback.text
            );
            replaced += 1;
        }
        println!("{city}: plain {:?}, with the fallback {:?}", plain.text, fallback.text);
    }
    assert!(replaced > 0, "no answer was replaced: the rule was never exercised");
}

#[test]
fn next_log_probs_are_the_first_step_of_greedy_generation() {
    let decoder = common::engine().decoder().unwrap();
    let prompt = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let pieces = [Piece::Text(prompt.into())];
    let log_probs = decoder.next_log_probs(&pieces).unwrap();
    assert_eq!(log_probs.len(), decoder.spec().vocab);
    let total: f64 = log_probs.iter().map(|&l| (l as f64).exp()).sum();
    assert!((total - 1.0).abs() < 1e-3, "probabilities sum to {total}");
    let best = (0..log_probs.len()).max_by(|&a, &b| log_probs[a].total_cmp(&log_probs[b])).unwrap() as u32;
    let first = decoder.generate(&pieces, &GenerateOptions::new(1)).unwrap().token_ids;
    assert_eq!(first, [best]);
    assert!(decoder.next_log_probs(&[]).is_err(), "an empty prompt has no next token");
}

#[test]
fn the_yes_no_prior_only_swaps_a_yes_or_no_first_token() {
    // Whatever the weights: with the question-only prior the first token is the plain one, or (when
    // the plain one reads yes or no) the other of the two, and the rest of the answer follows from it.
    let decoder = common::engine().decoder().unwrap();
    let ask = |document: &str, question: &str| {
        let context = if document.is_empty() { String::new() } else { format!("Document:\n{document}\n\n") };
        format!("<|im_start|>user\n{context}Question: {question}<|im_end|>\n<|im_start|>assistant\n")
    };
    let yes_no = |text: &str| matches!(text.trim().to_lowercase().as_str(), "yes" | "no");
    let cases = [
        (
            "The river Alna and the river Lune both flow into the North Sea.",
            "Do the Alna and the Lune flow into the same sea?",
        ),
        ("Mount Keller is 2,310 m high; Mount Orin is 1,905 m high.", "Is Mount Keller higher than Mount Orin?"),
        ("The harbour light at Kestrel Point was kept by Ada Morrow.", "Who kept the harbour light?"),
    ];
    let mut yes_or_no_first = 0;
    for (document, question) in cases {
        let pieces = [Piece::Text(ask(document, question))];
        let prior = decoder.next_log_probs(&[Piece::Text(ask("", question))]).unwrap();
        let base = GenerateOptions { stop_at_newline: true, ..GenerateOptions::new(4) };
        let plain = decoder.generate(&pieces, &base).unwrap();
        let calibrated = decoder.generate(&pieces, &GenerateOptions { yes_no_prior: Some(prior), ..base }).unwrap();
        let first = |g: &e2llm::decode::Generation| decoder.detokenize(&g.token_ids[..1]).unwrap();
        if yes_no(&first(&plain)) {
            yes_or_no_first += 1;
            assert!(yes_no(&first(&calibrated)), "{:?} became {:?}", plain.text, calibrated.text);
        } else {
            assert_eq!(calibrated.token_ids, plain.token_ids, "{question}");
        }
        println!("{question} plain {:?}, calibrated {:?}", plain.text, calibrated.text);
    }
    assert!(yes_or_no_first > 0, "no answer began with yes or no: the rule was never exercised");
}
