//! Lexical scoring of a document's chunks against a question (Okapi BM25), and rank fusion with the
//! dense (cosine) ranking.
//!
//! Why: a sentence encoder turns a ~100-token chunk into one vector; a single odd sentence inside it
//! (a "needle": a name, a number) barely moves that vector, so cosine ranking misses it. The words the
//! question shares with that sentence are rare in the document, which is exactly what BM25 rewards.
//! Fusing the two rankings keeps the dense ranking's paraphrase matching and adds exact-term matching.

/// BM25 term-frequency saturation and length normalisation (the usual defaults).
const K1: f64 = 1.2;
const B: f64 = 0.75;
/// Reciprocal-rank-fusion constant: damps the weight of the very first ranks.
pub const RRF_K: f64 = 60.0;

/// Words that carry no topic: skipping them keeps "what/how/the" from scoring.
const STOPWORDS: &[&str] = &[
    "a", "an", "and", "are", "as", "at", "be", "by", "did", "do", "does", "for", "from", "had", "has", "have", "how",
    "in", "is", "it", "its", "many", "much", "of", "on", "or", "that", "the", "their", "there", "this", "to", "was",
    "were", "what", "when", "where", "which", "who", "whom", "why", "with",
];

/// Lower-cased alphanumeric words, stopwords removed.
pub fn terms(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .filter(|w| !STOPWORDS.contains(&w.as_str()))
        .collect()
}

/// BM25 score of every text against `query` (0 for texts sharing no term with it).
pub fn bm25<S: AsRef<str>>(query: &str, texts: &[S]) -> Vec<f64> {
    let mut query_terms = terms(query);
    query_terms.sort();
    query_terms.dedup();
    if query_terms.is_empty() || texts.is_empty() {
        return vec![0.0; texts.len()];
    }
    // Per text: its length in terms and the counts of the query's terms in it.
    let counted: Vec<(usize, Vec<u32>)> = texts
        .iter()
        .map(|text| {
            let words = terms(text.as_ref());
            let counts = query_terms.iter().map(|q| words.iter().filter(|w| *w == q).count() as u32).collect();
            (words.len(), counts)
        })
        .collect();
    let n = texts.len() as f64;
    let mean_len = (counted.iter().map(|(len, _)| *len).sum::<usize>() as f64 / n).max(1.0);
    let idf: Vec<f64> = (0..query_terms.len())
        .map(|t| {
            let df = counted.iter().filter(|(_, counts)| counts[t] > 0).count() as f64;
            ((n - df + 0.5) / (df + 0.5) + 1.0).ln()
        })
        .collect();
    counted
        .iter()
        .map(|(len, counts)| {
            let norm = K1 * (1.0 - B + B * *len as f64 / mean_len);
            counts
                .iter()
                .zip(&idf)
                .map(|(&tf, idf)| {
                    let tf = tf as f64;
                    idf * tf * (K1 + 1.0) / (tf + norm)
                })
                .sum()
        })
        .collect()
}

/// Item indices, highest score first (ties broken by position).
pub fn best_first(scores: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order
}

/// 0-based rank of every item under `scores` (highest first; ties broken by position).
fn ranks(scores: &[f64]) -> Vec<usize> {
    let order = best_first(scores);
    let mut rank = vec![0; scores.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    rank
}

/// The items of `chosen` (best first) that keep up with the best: an item stays when, under at least one
/// of `scorings`, it scores at least `min` times that scoring's highest score over all items. The first
/// item always stays; a scoring whose highest score is not positive (BM25 with no shared term) judges
/// nothing; with none that judges, all stay.
pub fn keep_relevant(scorings: &[Vec<f64>], chosen: &[usize], min: f64) -> Vec<usize> {
    let tops: Vec<(usize, f64)> = scorings
        .iter()
        .enumerate()
        .filter_map(|(s, scores)| {
            let top = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (top > 0.0).then_some((s, top))
        })
        .collect();
    if tops.is_empty() {
        return chosen.to_vec();
    }
    chosen
        .iter()
        .enumerate()
        .filter(|&(rank, &i)| rank == 0 || tops.iter().any(|&(s, top)| scorings[s][i] >= min * top))
        .map(|(_, &i)| i)
        .collect()
}

/// Reciprocal rank fusion of several scorings of the same items: `Σ 1 / (RRF_K + rank + 1)`.
pub fn fuse(scorings: &[Vec<f64>]) -> Vec<f64> {
    fuse_weighted(scorings, &vec![1.0; scorings.len()])
}

/// Reciprocal rank fusion with a weight per scoring: `Σ weight / (RRF_K + rank + 1)`.
pub fn fuse_weighted(scorings: &[Vec<f64>], weights: &[f64]) -> Vec<f64> {
    assert_eq!(scorings.len(), weights.len(), "one weight per scoring");
    let len = scorings.first().map_or(0, Vec::len);
    let mut fused = vec![0.0; len];
    for (scores, weight) in scorings.iter().zip(weights) {
        assert_eq!(scores.len(), len, "fused scorings rank the same items");
        for (i, r) in ranks(scores).into_iter().enumerate() {
            fused[i] += weight / (RRF_K + r as f64 + 1.0);
        }
    }
    fused
}

/// The second hop's scoring (pseudo-relevance feedback): BM25 of the question together with the words
/// of item `best`, the one the question matched best. A two-hop question ("the birthplace of the star
/// of the film X") names the first hop; its answer sits in a text that shares a name with the first
/// hop's text, not a word with the question.
pub fn second_hop<S: AsRef<str>>(question: &str, texts: &[S], best: usize) -> Vec<f64> {
    bm25(&format!("{question} {}", texts[best].as_ref()), texts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rare_shared_terms_win() {
        let texts = [
            "The economy grew and the nation prospered under the new laws of the land.",
            "The harbour lighthouse of Trondheim is painted ochre and has 412 steps. Congress met.",
            "Congress passed the budget; the nation and the economy were discussed at length.",
        ];
        let scores = bm25("How many steps does the harbour lighthouse of Trondheim have?", &texts);
        assert!(scores[1] > 0.0 && scores[0] == 0.0 && scores[2] == 0.0, "{scores:?}");
    }

    #[test]
    fn no_shared_terms_scores_zero() {
        assert_eq!(bm25("what is it", &["anything at all"]), vec![0.0]);
        assert_eq!(bm25("zebra", &["anything"; 3]), vec![0.0; 3]);
        assert!(bm25::<&str>("zebra", &[]).is_empty());
    }

    #[test]
    fn only_items_near_the_best_of_some_scoring_stay() {
        let dense = vec![0.9, 0.2, 0.7, 0.1];
        let bm25 = vec![10.0, 1.0, 0.0, 6.0];
        let scorings = [dense, bm25];
        // 2 is near the best dense score, 3 near the best BM25 score, 1 near neither.
        assert_eq!(keep_relevant(&scorings, &[0, 2, 3, 1], 0.6), [0, 2, 3]);
        assert_eq!(keep_relevant(&scorings, &[0, 2, 3, 1], 0.0), [0, 2, 3, 1]);
        assert_eq!(keep_relevant(&scorings, &[1, 2], 0.95), [1], "the first always stays");
        let silent = [vec![0.0, 0.0, 0.0]];
        assert_eq!(keep_relevant(&silent, &[2, 0, 1], 0.9), [2, 0, 1], "no scoring judges: all stay");
    }

    #[test]
    fn fusion_rewards_agreement() {
        let dense = vec![0.9, 0.8, 0.1];
        let lexical = vec![0.0, 5.0, 1.0];
        let fused = fuse(&[dense, lexical]);
        assert!(fused[1] > fused[0] && fused[0] > fused[2], "{fused:?}");
    }

    #[test]
    fn terms_drop_stopwords_and_case() {
        assert_eq!(terms("How MANY steps, in Trondheim?"), vec!["steps", "trondheim"]);
    }

    proptest::proptest! {
        /// Any query and texts: finite, non-negative scores, one per text; fusion of any scorings is finite.
        #[test]
        fn scores_are_finite(query in ".{0,40}", texts in proptest::collection::vec(".{0,60}", 0..8)) {
            let scores = bm25(&query, &texts);
            proptest::prop_assert_eq!(scores.len(), texts.len());
            proptest::prop_assert!(scores.iter().all(|s| s.is_finite() && *s >= 0.0));
            let fused = fuse(&[scores.clone(), scores]);
            proptest::prop_assert!(fused.iter().all(|s| s.is_finite() && *s > 0.0));
        }
    }

    #[test]
    fn the_second_hop_ranks_what_shares_a_name_with_the_first() {
        let texts = [
            "The film Night Harbour starred Ada Lindqvist and was shot in Bergen.",
            "Ada Lindqvist was born in Uppsala in 1931.",
            "Bergen is a port city with a fish market.",
            "Uppsala has a cathedral and a university.",
        ];
        // The question alone finds the film, and nothing about its star's birth.
        let question = "What is the birthplace of the star of the film Night Harbour?";
        let scores = bm25(question, &texts);
        assert_eq!(best_first(&scores)[0], 0);
        assert_eq!(scores[1], 0.0);
        // With the film's words, the star's text (two shared names) comes next, then Bergen's (one).
        assert_eq!(best_first(&second_hop(question, &texts, 0))[..3], [0, 1, 2]);
    }

    #[test]
    fn weighted_fusion_follows_the_heavier_ranking() {
        let a = vec![3.0, 2.0, 1.0];
        let b = vec![1.0, 2.0, 3.0];
        assert_eq!(best_first(&fuse_weighted(&[a.clone(), b.clone()], &[1.0, 2.0]))[0], 2);
        assert_eq!(best_first(&fuse_weighted(&[a.clone(), b.clone()], &[2.0, 1.0]))[0], 0);
        assert_eq!(fuse(&[a.clone(), b.clone()]), fuse_weighted(&[a, b], &[1.0, 1.0]));
    }
}
