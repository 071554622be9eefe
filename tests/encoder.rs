//! The Rust encoder against the export's golden vectors (NumPy reference), and batch invariance.

mod common;

use e2llm::chunk::Chunker;
use e2llm::vector::dot;

#[test]
fn encoder_matches_golden_vectors() {
    let golden = common::golden();
    let cases = golden["encoder"].as_array().expect("golden.encoder is a list");
    assert!(cases.len() >= 20, "golden set too small: {}", cases.len());
    let encoder = common::engine().encoder().unwrap();
    let texts: Vec<&str> = cases.iter().map(|c| c["text"].as_str().unwrap()).collect();
    let vectors = encoder.embed(&texts, 8).unwrap();
    for (i, case) in cases.iter().enumerate() {
        // Same tokenisation as the reference (it includes [CLS] ... [SEP]).
        let ids: Vec<u32> = case["input_ids"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let ours = encoder.tokenizer().encode(texts[i], false).unwrap();
        assert_eq!(&ids[1..ids.len() - 1], ours.get_ids(), "tokens differ for {:?}", texts[i]);
        let expected: Vec<f32> =
            case["embedding"].as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let got = vectors.row(i);
        let cosine = dot(got, &expected);
        let max_diff = got.iter().zip(&expected).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        assert!(cosine > 0.9999 && max_diff < 1e-4, "{:?}: cosine {cosine}, max diff {max_diff}", texts[i]);
        let norm = dot(got, got).sqrt();
        assert!((norm - 1.0).abs() < 1e-4, "not normalised: {norm}");
    }
}

#[test]
fn vectors_do_not_depend_on_batch_or_neighbours() {
    let encoder = common::engine().encoder().unwrap();
    let text = std::fs::read_to_string(common::examples_dir().join("1941-Roosevelt-1.txt")).unwrap();
    let chunker = Chunker::new(encoder.tokenizer(), 128).unwrap();
    let chunks = chunker.chunk(&text).unwrap();
    let rows: Vec<&[u32]> = chunks.iter().take(24).map(|c| c.ids.as_slice()).collect();
    let alone: Vec<Vec<f32>> = rows.iter().map(|r| encoder.embed_ids(&[r], 1).unwrap().data).collect();
    for batch_size in [3, 8, 32] {
        let together = encoder.embed_ids(&rows, batch_size).unwrap();
        for (i, single) in alone.iter().enumerate() {
            let diff = single.iter().zip(together.row(i)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
            assert!(diff <= 1e-5, "chunk {i} differs by {diff} at batch size {batch_size}");
        }
    }
    // Different neighbours: the same chunk next to a very short and a very long one.
    let short: &[u32] = &chunks[0].ids[..2];
    let mixed = encoder.embed_ids(&[short, rows[5], rows[7]], 4).unwrap();
    let diff = alone[5].iter().zip(mixed.row(1)).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    assert!(diff <= 1e-5, "neighbours changed a vector by {diff}");
}

#[test]
fn overlong_rows_are_refused() {
    let encoder = common::engine().encoder().unwrap();
    let long = vec![1000u32; encoder.max_content_tokens() + 1];
    assert!(encoder.embed_ids(&[&long], 1).is_err());
}
