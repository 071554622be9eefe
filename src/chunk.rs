//! Token chunker: splits a document into pieces of at most `chunk_tokens` encoder tokens, on
//! sentence boundaries where possible, on word boundaries otherwise, never inside a token or a
//! character.
//! Chunk byte ranges tile the document: concatenating every chunk's text gives the text back.

use tokenizers::Tokenizer;
use unicode_segmentation::UnicodeSegmentation;

use crate::error::{Error, Result};

/// Default chunk length in encoder tokens (special tokens excluded): MiniLM's training length.
pub const DEFAULT_CHUNK_TOKENS: usize = 128;

#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub seq: usize,
    /// Token span `[token_start, token_end)` in the document's tokenisation.
    pub token_start: usize,
    pub token_end: usize,
    /// Byte span `[byte_start, byte_end)` in the document text.
    pub byte_start: usize,
    pub byte_end: usize,
    /// Encoder token ids of the span (no special tokens).
    pub ids: Vec<u32>,
}

impl Chunk {
    pub fn text<'a>(&self, document: &'a str) -> &'a str {
        &document[self.byte_start..self.byte_end]
    }
}

/// A document's tokens: ids, byte offsets, and where words and sentences start.
struct Tokens {
    ids: Vec<u32>,
    starts: Vec<usize>,
    word_start: Vec<bool>,
}

pub struct Chunker<'t> {
    tokenizer: &'t Tokenizer,
    chunk_tokens: usize,
}

impl<'t> Chunker<'t> {
    pub fn new(tokenizer: &'t Tokenizer, chunk_tokens: usize) -> Result<Self> {
        if chunk_tokens == 0 {
            return Err(Error::Invalid("chunk_tokens must be at least 1".into()));
        }
        Ok(Chunker { tokenizer, chunk_tokens })
    }

    pub fn chunk_tokens(&self) -> usize {
        self.chunk_tokens
    }

    fn tokenize(&self, text: &str) -> Result<Tokens> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| Error::tokenizer("encoder", e))?;
        let mut previous_word = None;
        let word_start = encoding
            .get_word_ids()
            .iter()
            .map(|word| {
                let starts = word.is_none() || *word != previous_word;
                previous_word = *word;
                starts
            })
            .collect();
        Ok(Tokens {
            ids: encoding.get_ids().to_vec(),
            starts: encoding.get_offsets().iter().map(|(start, _)| *start).collect(),
            word_start,
        })
    }

    /// Splits `text` into chunks. A text with no tokens (empty, only whitespace or control
    /// characters) gives no chunks.
    pub fn chunk(&self, text: &str) -> Result<Vec<Chunk>> {
        let tokens = self.tokenize(text)?;
        let n = tokens.ids.len();
        if n == 0 {
            return Ok(Vec::new());
        }
        // Token index at which each sentence starts (the first token at or after its first byte).
        let mut sentence_starts: Vec<usize> = text
            .split_sentence_bound_indices()
            .map(|(byte, _)| tokens.starts.partition_point(|&start| start < byte))
            .filter(|&t| t < n)
            .collect();
        sentence_starts.push(n);
        sentence_starts.dedup();

        let mut spans = Vec::new();
        let mut start = 0;
        let mut end = 0;
        for &sentence_end in sentence_starts.iter().skip_while(|&&t| t == 0) {
            if sentence_end - start <= self.chunk_tokens {
                end = sentence_end;
                continue;
            }
            if end > start {
                spans.push((start, end));
                start = end;
            }
            // A sentence longer than a chunk: cut it at word starts.
            while sentence_end - start > self.chunk_tokens {
                let cut = self.word_cut(&tokens, start);
                spans.push((start, cut));
                start = cut;
            }
            end = sentence_end;
        }
        if end > start {
            spans.push((start, end));
        }

        let chunks = spans
            .iter()
            .enumerate()
            .map(|(seq, &(token_start, token_end))| Chunk {
                seq,
                token_start,
                token_end,
                byte_start: if seq == 0 { 0 } else { tokens.starts[token_start] },
                byte_end: if token_end == n { text.len() } else { tokens.starts[token_end] },
                ids: tokens.ids[token_start..token_end].to_vec(),
            })
            .collect();
        Ok(chunks)
    }

    /// The furthest cut in `(start, start + chunk_tokens]` that falls on a word start; a single
    /// word longer than a chunk is cut between its tokens, but never inside a character: the
    /// tokens one character splits into (a Hangul syllable gives up to three jamo) share its byte
    /// span, so where even one character is longer than a chunk, the chunk holds that character
    /// whole and is longer than `chunk_tokens` by the rest of its tokens.
    fn word_cut(&self, tokens: &Tokens, start: usize) -> usize {
        let n = tokens.ids.len();
        let limit = start + self.chunk_tokens;
        let between_characters = |t: usize| t == n || tokens.starts[t] > tokens.starts[t - 1];
        (start + 1..=limit.min(n))
            .rev()
            .find(|&t| t < n && tokens.word_start[t] && between_characters(t))
            .or_else(|| (start + 1..=limit.min(n)).rev().find(|&t| between_characters(t)))
            .unwrap_or_else(|| (limit..=n).find(|&t| between_characters(t)).unwrap_or(n))
    }
}
