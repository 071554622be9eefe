//! The prompt: a mode's document context laid out between the instruction and the question
//! (the layout shared with training), cut to the window, and reported as the decoder reads it.

use crate::decode::{Decoder, Piece};
use crate::error::Result;
use crate::manifest::PromptTemplate;

/// One piece of a prompt as the decoder reads it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PromptPart {
    /// Decoder token ids.
    Tokens(Vec<u32>),
    /// This many soft tokens (adapter outputs) in a row.
    SoftTokens(usize),
    /// This many RCC memory positions (in the KV cache, in front of the prompt).
    Memory(usize),
}

/// A mode's document context: `fixed` pieces do not depend on the question (soft tokens, the full
/// document), `per_question` pieces do (retrieved text, after the fixed ones).
#[derive(Debug, Clone, Default)]
pub(super) struct Context {
    pub(super) fixed: Vec<Piece>,
    pub(super) per_question: Vec<Piece>,
    /// RCC memory: in the KV cache in front of the whole prompt (`rcc`).
    pub(super) memory: Option<Piece>,
    /// Chunks whose text was retrieved (or whose memory is read), in document order.
    pub(super) selected: Vec<usize>,
    /// The chunk retrieval ranked first (rag, hybrid): where a second hop starts from.
    pub(super) best: Option<usize>,
    pub(super) truncated: bool,
    /// The context's text as the decoder reads it (filled for extractive decoding and whole numbers).
    pub(super) text: String,
    /// Chunks whose text the decoder reads whole: the retrieved ones (rag, hybrid), those whose memory
    /// it reads (rcc), those that fit the window (full); in document order.
    pub(super) read: Vec<usize>,
}

/// A prompt split where the prefix KV cache cuts it: `shared` is the same for every question about
/// the document (reused between questions), `per_question` is the rest.
#[derive(Debug, Clone)]
pub struct Prompt {
    pub shared: Vec<Piece>,
    pub per_question: Vec<Piece>,
}

impl Prompt {
    pub fn pieces(&self) -> Vec<Piece> {
        self.shared.iter().chain(&self.per_question).cloned().collect()
    }
}

/// The prompt layout shared with training (onnx/prompt.json; `onnx/e2llm_offline/prompt.py` builds
/// the same): `prefix · context_prefix · CONTEXT · context_suffix · question_prefix · QUESTION · suffix`,
/// without the context block when there is no context. The shared prefix runs through the fixed
/// context; with no fixed context (rag, question-only) nothing is shared.
pub(super) fn layout(template: &PromptTemplate, context: Option<Context>, question_ids: Vec<u32>) -> Prompt {
    let text = |s: &String| Piece::Text(s.clone());
    let question = [text(&template.question_prefix), Piece::Tokens(question_ids), text(&template.suffix)];
    let Some(context) = context else {
        return Prompt { shared: Vec::new(), per_question: [vec![text(&template.prefix)], question.to_vec()].concat() };
    };
    if let Some(memory) = context.memory {
        // rcc: the memory, then the question-only prompt; the memory and the instruction are shared.
        return Prompt { shared: vec![memory, text(&template.prefix)], per_question: question.to_vec() };
    }
    let mut block = vec![text(&template.prefix), text(&template.context_prefix)];
    block.extend(context.fixed.iter().cloned());
    let fixed_only = context.per_question.is_empty();
    let mut rest = context.per_question;
    rest.push(text(&template.context_suffix));
    rest.extend(question);
    if context.fixed.is_empty() {
        block.extend(rest);
        return Prompt { shared: Vec::new(), per_question: block };
    }
    if fixed_only {
        // compressed, full: the context suffix is fixed too.
        block.push(rest.remove(0));
    }
    Prompt { shared: block, per_question: rest }
}

/// The prompt's pieces as token ids and soft-token counts (text pieces tokenised as the decoder does).
pub(super) fn describe(decoder: &Decoder, pieces: &[Piece]) -> Result<Vec<PromptPart>> {
    let hidden = decoder.hidden();
    pieces
        .iter()
        .map(|piece| {
            Ok(match piece {
                Piece::Text(text) => PromptPart::Tokens(decoder.tokenize(text)?),
                Piece::Tokens(ids) => PromptPart::Tokens(ids.clone()),
                Piece::Embeds(rows) => PromptPart::SoftTokens(rows.len() / hidden),
                Piece::Memory(memory) => PromptPart::Memory(memory.slots),
            })
        })
        .collect()
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
pub(super) fn cut_at_char_boundary(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The chunks that lie whole within the first `kept` bytes of their concatenation (a document cut to
/// the window).
pub(super) fn chunks_within(texts: &[String], kept: usize) -> Vec<usize> {
    let ends = texts.iter().scan(0, |end, text| {
        *end += text.len();
        Some(*end)
    });
    ends.take_while(|&end| end <= kept).enumerate().map(|(i, _)| i).collect()
}

/// The first `budget` ids, and whether any were cut off.
pub(super) fn fit(mut ids: Vec<u32>, budget: usize) -> (Vec<u32>, bool) {
    let cut = ids.len() > budget;
    ids.truncate(budget);
    (ids, cut)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::rcc::{Memory, MemoryShape};

    #[test]
    fn questions_are_cut_on_character_boundaries() {
        assert_eq!(cut_at_char_boundary("short", 16), "short");
        assert_eq!(cut_at_char_boundary("ééé", 3), "é");
        assert_eq!(cut_at_char_boundary("abc", 0), "");
    }

    #[test]
    fn the_chunks_within_a_cut_are_those_that_end_before_it() {
        let texts: Vec<String> = ["abc", "de", "fghi"].iter().map(|t| t.to_string()).collect();
        assert_eq!(chunks_within(&texts, 9), [0, 1, 2]);
        assert_eq!(chunks_within(&texts, 8), [0, 1]);
        assert_eq!(chunks_within(&texts, 5), [0, 1]);
        assert_eq!(chunks_within(&texts, 4), [0]);
        assert!(chunks_within(&texts, 2).is_empty());
        assert!(chunks_within(&[], 10).is_empty());
    }

    #[test]
    fn fit_cuts_to_the_budget_and_says_so() {
        assert_eq!(fit(vec![1, 2, 3], 5), (vec![1, 2, 3], false));
        assert_eq!(fit(vec![1, 2, 3], 3), (vec![1, 2, 3], false));
        assert_eq!(fit(vec![1, 2, 3], 2), (vec![1, 2], true));
        assert_eq!(fit(vec![1, 2, 3], 0), (vec![], true));
        assert_eq!(fit(vec![], 0), (vec![], false));
    }

    fn template() -> PromptTemplate {
        PromptTemplate {
            prefix: "P".into(),
            context_prefix: "CP".into(),
            context_suffix: "CS".into(),
            question_prefix: "QP".into(),
            suffix: "S".into(),
            chunk_separator: "|".into(),
        }
    }

    /// Pieces as comparable strings: text as itself, token ids as a list, soft tokens and memory by size.
    fn show(pieces: &[Piece]) -> Vec<String> {
        pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.clone(),
                Piece::Tokens(ids) => format!("{ids:?}"),
                Piece::Embeds(rows) => format!("embeds {}", rows.len()),
                Piece::Memory(memory) => format!("memory {}", memory.slots),
            })
            .collect()
    }

    fn laid_out(context: Option<Context>) -> (Vec<String>, Vec<String>) {
        let prompt = layout(&template(), context, vec![7, 8]);
        let all = show(&prompt.pieces());
        let (shared, per_question) = (show(&prompt.shared), show(&prompt.per_question));
        assert_eq!(all, [shared.clone(), per_question.clone()].concat(), "pieces() is shared then per_question");
        (shared, per_question)
    }

    #[test]
    fn layout_without_context_is_the_question_alone_and_shares_nothing() {
        let (shared, per_question) = laid_out(None);
        assert!(shared.is_empty());
        assert_eq!(per_question, ["P", "QP", "[7, 8]", "S"]);
    }

    #[test]
    fn layout_of_retrieved_text_only_shares_nothing() {
        let context = Context { per_question: vec![Piece::Tokens(vec![1, 2])], ..Context::default() };
        let (shared, per_question) = laid_out(Some(context));
        assert!(shared.is_empty());
        assert_eq!(per_question, ["P", "CP", "[1, 2]", "CS", "QP", "[7, 8]", "S"]);
    }

    #[test]
    fn layout_of_fixed_context_shares_it_through_the_context_suffix() {
        let context = Context { fixed: vec![Piece::Embeds(vec![0.5; 6])], ..Context::default() };
        let (shared, per_question) = laid_out(Some(context));
        assert_eq!(shared, ["P", "CP", "embeds 6", "CS"]);
        assert_eq!(per_question, ["QP", "[7, 8]", "S"]);
    }

    #[test]
    fn layout_of_fixed_and_retrieved_context_shares_the_fixed_part() {
        let context = Context {
            fixed: vec![Piece::Embeds(vec![0.5; 6])],
            per_question: vec![Piece::Tokens(vec![1, 2])],
            ..Context::default()
        };
        let (shared, per_question) = laid_out(Some(context));
        assert_eq!(shared, ["P", "CP", "embeds 6"]);
        assert_eq!(per_question, ["[1, 2]", "CS", "QP", "[7, 8]", "S"]);
    }

    #[test]
    fn layout_with_memory_puts_it_first_with_no_context_block() {
        let shape = MemoryShape { layers: 1, kv_heads: 1, head_dim: 2 };
        let memory = Memory { shape, slots: 3, data: vec![0.0; 3 * shape.per_slot()] };
        let context = Context { memory: Some(Piece::Memory(Arc::new(memory))), ..Context::default() };
        let (shared, per_question) = laid_out(Some(context));
        assert_eq!(shared, ["memory 3", "P"]);
        assert_eq!(per_question, ["QP", "[7, 8]", "S"]);
    }
}
