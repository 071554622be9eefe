//! The decoder LLM on ONNX Runtime: a prompt made of text and soft tokens (adapter outputs) is
//! embedded, prefilled in slices (bounded memory) into a KV cache, then decoded greedily one token
//! per step, reusing the cache, until EOS or `max_new_tokens`.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::{DynValue, Tensor};
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::manifest::{DecoderSpec, Manifest};
use crate::rcc::{Memory, MemoryShape};
use crate::runtime::{self, Device, Precision, Provider};

/// Longest slice of prompt positions run in one prefill step: bounds the attention scores'
/// memory (heads × slice × context floats) for long prompts.
pub const PREFILL_SLICE: usize = 512;

/// A piece of a prompt.
#[derive(Debug, Clone)]
pub enum Piece {
    /// Text, tokenised with the decoder's tokenizer (special tokens like `<|im_start|>` recognised).
    Text(String),
    /// Decoder token ids.
    Tokens(Vec<u32>),
    /// Rows of `hidden` floats placed directly in the embedding sequence (soft tokens).
    Embeds(Vec<f32>),
    /// Keys and values put straight into the KV cache at positions 0..slots-1 (RCC memory, keys
    /// already rotated there: `Memory::placed`). Only as a prompt's first piece.
    Memory(Arc<Memory>),
}

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub max_new_tokens: usize,
    /// Prompt positions per prefill step.
    pub prefill_slice: usize,
    /// Stop at the first line break that follows some non-blank text (the break is not kept).
    pub stop_at_newline: bool,
    /// Extractive decoding: the answer must be a span of this text (compared case-insensitively,
    /// whitespace collapsed). Each step takes the most likely of the top candidates that keeps the answer
    /// inside the text, or ends the answer when none does.
    pub copy_from: Option<String>,
    /// An answer does not end inside a number: where the decoder would end the answer (end of turn, or
    /// the line break `stop_at_newline` stops at) right after a digit, but gives a next digit at least
    /// [`NUMBER_CONTINUATION`] probability, the number goes on. The tokenizer splits numbers into
    /// single digits, and the trained decoder sometimes ends after the first ("How many steps ...?"
    /// -> "9" where the document says 902: end 0.88, "0" 0.10). Not applied to extractive decoding.
    pub whole_numbers: bool,
}

/// Smallest probability of a next digit that keeps a number going (see `GenerateOptions::whole_numbers`);
/// fixed before measuring, not tuned.
pub const NUMBER_CONTINUATION: f32 = 0.05;

impl GenerateOptions {
    pub fn new(max_new_tokens: usize) -> Self {
        GenerateOptions {
            max_new_tokens,
            prefill_slice: PREFILL_SLICE,
            stop_at_newline: false,
            copy_from: None,
            whole_numbers: false,
        }
    }
}

/// Default bound of the prefix KV cache (`E2LLM_PREFIX_CACHE_MB` overrides; 0 disables it).
pub const DEFAULT_PREFIX_CACHE_MB: usize = 512;

/// KV caches of prompt prefixes, least recently used evicted first, bounded in bytes. Keyed by a
/// hash of the prefix's embedding rows, so a hit is the same input at the same positions: the
/// cached keys and values are exactly those a fresh prefill would compute.
struct PrefixCache {
    limit_bytes: usize,
    used_bytes: usize,
    entries: VecDeque<CachedPrefix>,
}

struct CachedPrefix {
    key: u64,
    positions: usize,
    bytes: usize,
    kv: Arc<Vec<DynValue>>,
}

impl PrefixCache {
    fn get(&mut self, key: u64, positions: usize) -> Option<Arc<Vec<DynValue>>> {
        let index = self.entries.iter().position(|e| e.key == key && e.positions == positions)?;
        let entry = self.entries.remove(index)?;
        let kv = entry.kv.clone();
        self.entries.push_back(entry);
        Some(kv)
    }

    fn insert(&mut self, key: u64, positions: usize, bytes: usize, kv: Arc<Vec<DynValue>>) {
        if bytes > self.limit_bytes {
            return;
        }
        while self.used_bytes + bytes > self.limit_bytes {
            match self.entries.pop_front() {
                Some(old) => self.used_bytes -= old.bytes,
                None => break,
            }
        }
        self.used_bytes += bytes;
        self.entries.push_back(CachedPrefix { key, positions, bytes, kv });
    }
}

fn prefix_cache_limit() -> usize {
    std::env::var("E2LLM_PREFIX_CACHE_MB")
        .ok()
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(DEFAULT_PREFIX_CACHE_MB)
        .saturating_mul(1 << 20)
}

#[derive(Debug, Clone)]
pub struct Generation {
    pub text: String,
    pub token_ids: Vec<u32>,
    pub prompt_tokens: usize,
    pub time_to_first_token: Duration,
    pub total: Duration,
    /// The prompt's prefix KV cache came from the prefix cache (only the rest was prefilled).
    pub prefix_cache_hit: bool,
}

pub struct Decoder {
    embed: Mutex<Session>,
    decoder: Mutex<Session>,
    tokenizer: Tokenizer,
    /// Token ids of the ten digits, where the vocabulary has them as single tokens.
    digits: Vec<u32>,
    spec: DecoderSpec,
    input_names: Vec<(String, String)>,
    provider: Provider,
    precision: Precision,
    prefix_cache: Mutex<PrefixCache>,
}

impl Decoder {
    /// Loads the decoder (its float16 variant if `precision` says so; the embedding lookup is float32).
    pub fn load(manifest: &Manifest, device: Device, precision: Precision, threads: usize) -> Result<Decoder> {
        let spec = manifest.decoder.clone();
        let tokenizer_path = manifest.path_of(&spec.tokenizer);
        let files = manifest.decoder_files();
        // Reading the weights dominates loading: the tokenizer and the embedding table load on other
        // threads while the decoder graph does (load 15-20% shorter, measured on a busy 2-core machine).
        let (tokenizer, embed, decoder) = std::thread::scope(|scope| {
            let tokenizer = scope.spawn(|| runtime::load_tokenizer(&tokenizer_path, "decoder"));
            let embed = scope.spawn(|| runtime::session(&manifest.dir, &manifest.path_of(&spec.embed_file), device, 1));
            let decoder = runtime::model_session(&manifest.dir, &files, device, precision, threads);
            let joined = |name: &str| Error::Inference { model: name.into(), reason: "loading thread panicked".into() };
            (
                tokenizer.join().unwrap_or_else(|_| Err(joined("decoder tokenizer"))),
                embed.join().unwrap_or_else(|_| Err(joined("embed"))),
                decoder,
            )
        });
        let (tokenizer, (embed, _)) = (tokenizer?, embed?);
        let (decoder, provider, precision) = decoder?;
        let input_names = (0..spec.layers)
            .map(|i| (format!("past_key_values.{i}.key"), format!("past_key_values.{i}.value")))
            .collect();
        let prefix_cache =
            Mutex::new(PrefixCache { limit_bytes: prefix_cache_limit(), used_bytes: 0, entries: VecDeque::new() });
        let digits = ('0'..='9').filter_map(|d| tokenizer.token_to_id(&d.to_string())).collect();
        Ok(Decoder {
            embed: Mutex::new(embed),
            decoder: Mutex::new(decoder),
            tokenizer,
            digits,
            spec,
            input_names,
            provider,
            precision,
            prefix_cache,
        })
    }

    pub fn spec(&self) -> &DecoderSpec {
        &self.spec
    }
    pub fn provider(&self) -> Provider {
        self.provider
    }
    /// The precision of the decoder graph that runs (fp32, fp16 or quantized).
    pub fn precision(&self) -> Precision {
        self.precision
    }
    /// Floats per embedding row (the decoder's hidden size).
    pub fn hidden(&self) -> usize {
        self.spec.hidden
    }

    pub fn context_length(&self) -> usize {
        self.spec.context_length
    }

    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self
            .tokenizer
            .encode(text, false)
            .map_err(|e| Error::Tokenizer { what: "decoder".into(), reason: e.to_string() })?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| Error::Tokenizer { what: "decoder".into(), reason: e.to_string() })
    }

    /// Embedding rows for token ids (`ids.len() × hidden`).
    pub fn embed_tokens(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= self.spec.vocab) {
            return Err(Error::Invalid(format!(
                "token id {bad} outside the decoder's vocabulary of {}",
                self.spec.vocab
            )));
        }
        let err = |e: ort::Error| Error::inference("embed", e);
        let mut session = self.embed.lock().unwrap_or_else(|p| p.into_inner());
        let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
        let outputs = session
            .run(ort::inputs!["input_ids" => Tensor::from_array(([1, ids.len()], ids)).map_err(err)?])
            .map_err(err)?;
        let (_, data) = outputs["inputs_embeds"].try_extract_tensor::<f32>().map_err(err)?;
        Ok(data.to_vec())
    }

    /// The prompt's embedding sequence, appended to `embeds`.
    fn embed_pieces(&self, pieces: &[Piece], embeds: &mut Vec<f32>) -> Result<()> {
        let hidden = self.spec.hidden;
        for piece in pieces {
            match piece {
                Piece::Text(text) => embeds.extend(self.embed_tokens(&self.tokenize(text)?)?),
                Piece::Tokens(ids) => embeds.extend(self.embed_tokens(ids)?),
                Piece::Embeds(rows) => {
                    if rows.len() % hidden != 0 {
                        return Err(Error::Invalid(format!(
                            "soft tokens of {} floats are not rows of {hidden}",
                            rows.len()
                        )));
                    }
                    embeds.extend_from_slice(rows);
                }
                Piece::Memory(_) => {
                    return Err(Error::Invalid("memory goes only at the start of a prompt".into()));
                }
            }
        }
        Ok(())
    }

    /// Bytes of the KV cache for `positions` positions.
    fn cache_bytes(&self, positions: usize) -> usize {
        positions * self.spec.layers * 2 * self.spec.kv_heads * self.spec.head_dim * std::mem::size_of::<f32>()
    }

    /// Greedy generation from a prompt given as pieces.
    pub fn generate(&self, pieces: &[Piece], options: &GenerateOptions) -> Result<Generation> {
        self.generate_with_prefix(&[], pieces, options)
    }

    /// Greedy generation from `shared` then `rest`: `shared` is a prefix other prompts share (the
    /// instruction and a document's context), whose KV cache is kept in the prefix cache and reused.
    pub fn generate_with_prefix(
        &self,
        shared: &[Piece],
        rest: &[Piece],
        options: &GenerateOptions,
    ) -> Result<Generation> {
        let started = Instant::now();
        let hidden = self.spec.hidden;
        // RCC memory, if any, is the first piece: it fills the cache's first positions directly.
        let (memory, shared) = match shared.split_first() {
            Some((Piece::Memory(memory), rest)) => (Some(memory.clone()), rest),
            _ => (None, shared),
        };
        let memory_slots = memory.as_ref().map_or(0, |m| m.slots);
        if let Some(memory) = &memory {
            if memory.shape != MemoryShape::of(&self.spec)
                || memory.data.len() != memory.slots * memory.shape.per_slot()
            {
                return Err(Error::Invalid("memory does not have the decoder's layers, KV heads and head size".into()));
            }
        }
        let mut embeds = Vec::new();
        self.embed_pieces(shared, &mut embeds)?;
        let shared_positions = memory_slots + embeds.len() / hidden;
        self.embed_pieces(rest, &mut embeds)?;
        let prompt_tokens = memory_slots + embeds.len() / hidden;
        if prompt_tokens == 0 {
            return Err(Error::Invalid("empty prompt".into()));
        }
        if prompt_tokens + options.max_new_tokens > self.spec.context_length {
            return Err(Error::Invalid(format!(
                "prompt of {prompt_tokens} positions + {} new tokens exceeds the decoder's context of {}",
                options.max_new_tokens, self.spec.context_length
            )));
        }
        // The shared prefix, if any and if shorter than the prompt, and its cache key (the memory's
        // values and the prefix's embedding rows).
        let cache_limit = self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner()).limit_bytes;
        let prefix = if shared_positions < prompt_tokens && cache_limit > 0 { shared_positions } else { 0 };
        let embedded_prefix = prefix.saturating_sub(memory_slots);
        let key = (prefix > 0).then(|| {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            let memory_values = memory.as_ref().map_or(&[][..], |m| m.data.as_slice());
            for value in memory_values.iter().chain(&embeds[..embedded_prefix * hidden]) {
                value.to_bits().hash(&mut hasher);
            }
            memory_slots.hash(&mut hasher);
            hasher.finish()
        });
        let cached = key.and_then(|k| self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner()).get(k, prefix));

        let mut session = self.decoder.lock().unwrap_or_else(|p| p.into_inner());
        let mut binding = self.binding(&session)?;
        let slice = options.prefill_slice.max(1) * hidden;
        let mut logits = Vec::new();
        // `position` counts cache positions; `done` the embedding rows already run.
        let (mut past, mut position) = match &cached {
            Some(kv) => (kv.clone(), prefix),
            None => match &memory {
                Some(memory) => (Arc::new(self.memory_cache(memory)?), memory_slots),
                None => (Arc::new(self.empty_cache()?), 0),
            },
        };
        if let (None, Some(key)) = (&cached, key) {
            for rows in embeds[..embedded_prefix * hidden].chunks(slice) {
                (logits, past) = self.step(&mut session, &mut binding, rows, position, &past)?;
                position += rows.len() / hidden;
            }
            self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner()).insert(
                key,
                prefix,
                self.cache_bytes(prefix),
                past.clone(),
            );
        }
        for rows in embeds[(position - memory_slots) * hidden..].chunks(slice) {
            (logits, past) = self.step(&mut session, &mut binding, rows, position, &past)?;
            position += rows.len() / hidden;
        }
        let mut token_ids = Vec::new();
        let mut time_to_first_token = Duration::ZERO;
        let source = options.copy_from.as_deref().map(normalise);
        while token_ids.len() < options.max_new_tokens {
            let next = match &source {
                Some(source) => self.extractive_next(&logits, &token_ids, source)?,
                None if options.whole_numbers => self.whole_number_next(&logits, &token_ids, options)?,
                None => argmax(&logits),
            };
            if token_ids.is_empty() {
                time_to_first_token = started.elapsed();
            }
            if self.spec.eos_token_ids.contains(&next) {
                break;
            }
            if options.stop_at_newline && self.ends_line(&token_ids, next)? {
                // The token may carry text before its line break (".\n"): keep it, cut below.
                token_ids.push(next);
                break;
            }
            token_ids.push(next);
            if token_ids.len() == options.max_new_tokens {
                break;
            }
            let embed = self.embed_tokens(&[next])?;
            (logits, past) = self.step(&mut session, &mut binding, &embed, position, &past)?;
            position += 1;
        }
        if options.max_new_tokens == 0 {
            time_to_first_token = started.elapsed();
        }
        let mut text = self.detokenize(&token_ids)?;
        if options.stop_at_newline {
            text = first_line(&text).to_string();
        }
        Ok(Generation {
            text: text.trim().to_string(),
            token_ids,
            prompt_tokens,
            time_to_first_token,
            total: started.elapsed(),
            prefix_cache_hit: cached.is_some(),
        })
    }

    /// The most likely of the top `EXTRACTIVE_CANDIDATES` tokens that keeps the answer a span of
    /// `source` (normalised), or that ends the answer (end of turn, a line break); end of turn when none.
    fn extractive_next(&self, logits: &[f32], before: &[u32], source: &str) -> Result<u32> {
        let eos = self.spec.eos_token_ids.first().copied().unwrap_or(0);
        let mut order: Vec<usize> = (0..logits.len()).collect();
        let top = EXTRACTIVE_CANDIDATES.min(order.len());
        order.select_nth_unstable_by(top.saturating_sub(1), |&a, &b| logits[b].total_cmp(&logits[a]));
        order.truncate(top);
        order.sort_unstable_by(|&a, &b| logits[b].total_cmp(&logits[a]));
        let mut ids = before.to_vec();
        for candidate in order {
            let candidate = candidate as u32;
            if self.spec.eos_token_ids.contains(&candidate) {
                return Ok(candidate);
            }
            ids.push(candidate);
            let text = normalise(&self.detokenize(&ids)?);
            ids.pop();
            // Whitespace (a line break included) keeps the normalised answer a span: allowed, and
            // `stop_at_newline` then ends the answer there.
            if text.is_empty() || source.contains(&text) {
                return Ok(candidate);
            }
        }
        Ok(eos)
    }

    /// The greedy next token, unless it would end the answer (end of turn, or the line break
    /// `stop_at_newline` stops at) right after a digit while a next digit has at least
    /// [`NUMBER_CONTINUATION`] probability: then that digit (see `GenerateOptions::whole_numbers`).
    /// Runs every step, so the cheap test (does the answer end in a digit?) comes first.
    fn whole_number_next(&self, logits: &[f32], before: &[u32], options: &GenerateOptions) -> Result<u32> {
        let next = argmax(logits);
        let Some(&last) = before.last() else { return Ok(next) };
        if !self.detokenize(&[last])?.ends_with(|c: char| c.is_ascii_digit()) {
            return Ok(next);
        }
        let ends =
            self.spec.eos_token_ids.contains(&next) || (options.stop_at_newline && self.ends_line(before, next)?);
        if !ends {
            return Ok(next);
        }
        let digit = self
            .digits
            .iter()
            .copied()
            .filter(|&d| (d as usize) < logits.len())
            .max_by(|&a, &b| logits[a as usize].total_cmp(&logits[b as usize]));
        Ok(digit.filter(|&d| probability(logits, d as usize) >= NUMBER_CONTINUATION).unwrap_or(next))
    }

    /// True when `next` holds a line break and the text so far (`before`) is not blank: the answer's
    /// first line is complete. A break before any text is kept (some answers start on a new line).
    fn ends_line(&self, before: &[u32], next: u32) -> Result<bool> {
        if !self.detokenize(&[next])?.contains('\n') {
            return Ok(false);
        }
        Ok(!self.detokenize(before)?.trim().is_empty())
    }

    /// A KV cache holding `memory` (positions 0..slots-1), in host memory.
    fn memory_cache(&self, memory: &Memory) -> Result<Vec<DynValue>> {
        let shape = [1, self.spec.kv_heads, memory.slots, self.spec.head_dim];
        let mut cache = Vec::with_capacity(self.spec.layers * 2);
        for layer in 0..self.spec.layers {
            for kind in 0..2 {
                let tensor = Tensor::from_array((shape, memory.block(layer, kind).to_vec()))
                    .map_err(|e| Error::inference("decoder", e))?;
                cache.push(tensor.into_dyn());
            }
        }
        Ok(cache)
    }

    fn empty_cache(&self) -> Result<Vec<DynValue>> {
        let shape = [1, self.spec.kv_heads, 0, self.spec.head_dim];
        (0..self.spec.layers * 2)
            .map(|_| {
                Tensor::from_array((shape, Vec::<f32>::new()))
                    .map(|t| t.into_dyn())
                    .map_err(|e| Error::inference("decoder", e))
            })
            .collect()
    }

    /// The decoder's I/O binding: logits come back to host memory, the KV cache (`present.*`) stays
    /// where the provider computes it (GPU memory under CUDA), so decoding never copies the cache
    /// between host and device; it is bound straight back as the next step's `past_key_values.*`.
    fn binding(&self, session: &Session) -> Result<Binding> {
        let err = |e: ort::Error| Error::inference("decoder", e);
        let memory = |device| MemoryInfo::new(device, 0, AllocatorType::Device, MemoryType::Default).map_err(err);
        let cache_memory = match self.provider {
            Provider::Cuda => memory(AllocationDevice::CUDA)?,
            Provider::Cpu => memory(AllocationDevice::CPU)?,
        };
        Ok(Binding { io: session.create_binding().map_err(err)?, host: memory(AllocationDevice::CPU)?, cache_memory })
    }

    /// Runs `embeds` (rows of hidden) at positions `past..` after the KV cache `cache` (left as
    /// it is: it may be shared with the prefix cache); returns the logits of the last position and
    /// the extended cache.
    fn step(
        &self,
        session: &mut Session,
        binding: &mut Binding,
        embeds: &[f32],
        past: usize,
        cache: &[DynValue],
    ) -> Result<(Vec<f32>, Arc<Vec<DynValue>>)> {
        let err = |e: ort::Error| Error::inference("decoder", e);
        let Binding { io: binding, host, cache_memory } = binding;
        // Outputs are bound anew each step: a binding reuses the previous step's output values as
        // preallocated outputs otherwise, and the cache grows by `n` positions per step.
        binding.bind_output_to_device("logits", host).map_err(err)?;
        for layer in 0..self.spec.layers {
            for kind in ["key", "value"] {
                binding.bind_output_to_device(format!("present.{layer}.{kind}"), cache_memory).map_err(err)?;
            }
        }
        let n = embeds.len() / self.spec.hidden;
        let positions: Vec<i64> = (past as i64..(past + n) as i64).collect();
        binding
            .bind_input("inputs_embeds", &Tensor::from_array(([1, n, self.spec.hidden], embeds.to_vec())).map_err(err)?)
            .map_err(err)?;
        binding
            .bind_input("attention_mask", &Tensor::from_array(([1, past + n], vec![1i64; past + n])).map_err(err)?)
            .map_err(err)?;
        binding.bind_input("position_ids", &Tensor::from_array(([1, n], positions)).map_err(err)?).map_err(err)?;
        for (layer, (key, value)) in self.input_names.iter().enumerate() {
            binding.bind_input(key.as_str(), &cache[2 * layer]).map_err(err)?;
            binding.bind_input(value.as_str(), &cache[2 * layer + 1]).map_err(err)?;
        }
        let mut outputs = session.run_binding(binding).map_err(err)?;
        let (_, logits) = outputs["logits"].try_extract_tensor::<f32>().map_err(err)?;
        let logits = logits.to_vec();
        let mut present = Vec::with_capacity(cache.len());
        for layer in 0..self.spec.layers {
            for kind in ["key", "value"] {
                present.push(
                    outputs
                        .remove(format!("present.{layer}.{kind}"))
                        .ok_or_else(|| Error::inference("decoder", format!("output present.{layer}.{kind} missing")))?,
                );
            }
        }
        Ok((logits, Arc::new(present)))
    }
}

/// An I/O binding with the memory its outputs go to.
struct Binding {
    io: IoBinding,
    host: MemoryInfo<'static>,
    cache_memory: MemoryInfo<'static>,
}

/// The text up to the first line break that follows non-blank text (all of it when there is none).
fn first_line(text: &str) -> &str {
    let start = text.len() - text.trim_start().len();
    match text[start..].find('\n') {
        Some(end) => &text[..start + end],
        None => text,
    }
}

/// Candidates extractive decoding considers per step, most likely first.
const EXTRACTIVE_CANDIDATES: usize = 64;

/// Lower case, whitespace runs as one space, trimmed: how extractive decoding compares answer and source.
fn normalise(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
}

fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// Softmax probability of `index` under `logits` (computed stably, from the maximum).
fn probability(logits: &[f32], index: usize) -> f32 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total: f32 = logits.iter().map(|&l| (l - max).exp()).sum();
    (logits[index] - max).exp() / total
}

#[cfg(test)]
mod tests {
    #[test]
    fn first_line_skips_leading_blank_lines() {
        assert_eq!(super::first_line("\n\n Paris.\n\nThe answer"), "\n\n Paris.");
        assert_eq!(super::first_line("Paris.\nMore"), "Paris.");
        assert_eq!(super::first_line("Paris"), "Paris");
        assert_eq!(super::first_line(""), "");
    }

    #[test]
    fn normalise_collapses_whitespace_and_case() {
        assert_eq!(super::normalise("  Ada\n  MORROW \t"), "ada morrow");
    }

    #[test]
    fn probability_is_a_stable_softmax() {
        let logits = [0.0f32, (3.0f32).ln(), 1000.0 - 1000.0];
        assert!((super::probability(&logits, 1) - 0.6).abs() < 1e-6);
        // Large logits do not overflow.
        let large = [1000.0f32, 1000.0, 999.0];
        let p: f32 = (0..3).map(|i| super::probability(&large, i)).sum();
        assert!((p - 1.0).abs() < 1e-5 && super::probability(&large, 0) > super::probability(&large, 2));
    }
}
