//! The decoder LLM on ONNX Runtime: a prompt made of text and soft tokens (adapter outputs) is
//! embedded, prefilled in slices (bounded memory) into a KV cache, then decoded greedily one token
//! per step, reusing the cache, until EOS or `max_new_tokens`.
//! How each step's token is chosen and when the answer ends is in `generate`; the KV cache's buffers,
//! written in place by the graph's GroupQueryAttention, in `kv`; the prefix KV cache, which questions
//! about the same document share, in `cache`.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ort::memory::{AllocationDevice, Allocator, AllocatorType, MemoryInfo, MemoryType};
use ort::session::{IoBinding, Session};
use ort::value::Tensor;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::manifest::{DecoderSpec, Manifest};
use crate::rcc::{Memory, MemoryShape};
use crate::runtime::{self, Device, Precision, Provider};

mod cache;
mod generate;
mod kv;

pub use cache::DEFAULT_PREFIX_CACHE_MB;
pub use generate::{repeats, words, yes_or_no, GenerateOptions, Generation, NUMBER_CONTINUATION};

use cache::{prefix_cache_limit, PrefixCache};
use generate::{
    answer_text, ends, invents_words, keeps_copy, next_token, normalise, End, Sources, Vocabulary, REPEAT_RETRIES,
};
use kv::{capacity_for, CacheShape, KvCache};

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

pub struct Decoder {
    embed: Mutex<Session>,
    decoder: Mutex<Session>,
    tokenizer: Tokenizer,
    /// Token ids of the ten digits, where the vocabulary has them as single tokens.
    digits: Vec<u32>,
    /// Pairs of single tokens that read "yes" and "no" the same way (" yes"/" no", "Yes"/"No", ...).
    yes_no: Vec<(u32, u32)>,
    spec: DecoderSpec,
    /// Per KV cache buffer (`KvCache::tensors` order): its past input and present output names.
    cache_names: Vec<(String, String)>,
    provider: Provider,
    precision: Precision,
    prefix_cache: Mutex<PrefixCache<KvCache>>,
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
            let joined = |name: &str| Error::inference(name, "loading thread panicked");
            (
                tokenizer.join().unwrap_or_else(|_| Err(joined("decoder tokenizer"))),
                embed.join().unwrap_or_else(|_| Err(joined("embed"))),
                decoder,
            )
        });
        let (tokenizer, (embed, _)) = (tokenizer?, embed?);
        let (decoder, provider, precision) = decoder?;
        // decoder.onnx of an export before GroupQueryAttention took an attention mask instead.
        if !decoder.inputs().iter().any(|input| input.name() == "seqlens_k") {
            let file = manifest.path_of(&spec.file);
            return Err(Error::model_file(
                &file,
                "this decoder graph predates the in-place KV cache (no `seqlens_k` input)",
            ));
        }
        let cache_names = (0..spec.layers)
            .flat_map(|i| {
                ["key", "value"].map(|kind| (format!("past_key_values.{i}.{kind}"), format!("present.{i}.{kind}")))
            })
            .collect();
        let prefix_cache = Mutex::new(PrefixCache::new(prefix_cache_limit()));
        let digits = ('0'..='9').filter_map(|d| tokenizer.token_to_id(&d.to_string())).collect();
        let yes_no = yes_no_pairs(&tokenizer);
        Ok(Decoder {
            embed: Mutex::new(embed),
            decoder: Mutex::new(decoder),
            tokenizer,
            digits,
            yes_no,
            spec,
            cache_names,
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
        let encoding = self.tokenizer.encode(text, false).map_err(|e| Error::tokenizer("decoder", e))?;
        Ok(encoding.get_ids().to_vec())
    }

    pub fn detokenize(&self, ids: &[u32]) -> Result<String> {
        self.tokenizer.decode(ids, true).map_err(|e| Error::tokenizer("decoder", e))
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

    fn cache_shape(&self) -> CacheShape {
        CacheShape { layers: self.spec.layers, kv_heads: self.spec.kv_heads, head_dim: self.spec.head_dim }
    }

    /// Log-probabilities of the token that follows `pieces` (text, tokens and soft tokens; no memory),
    /// prefilled in a cache of their own that is not kept.
    pub fn next_log_probs(&self, pieces: &[Piece]) -> Result<Vec<f32>> {
        let hidden = self.spec.hidden;
        let mut embeds = Vec::new();
        self.embed_pieces(pieces, &mut embeds)?;
        let positions = embeds.len() / hidden;
        if positions == 0 || positions > self.spec.context_length {
            return Err(Error::Invalid(format!(
                "prompt of {positions} positions for a decoder of {} (at least 1)",
                self.spec.context_length
            )));
        }
        let mut session = self.decoder.lock().unwrap_or_else(|p| p.into_inner());
        let mut binding = self.binding(&session)?;
        let capacity = capacity_for(positions, self.spec.context_length);
        let mut cache = KvCache::new(&binding.allocator, self.cache_shape(), capacity, 0, |_| Ok(Vec::new()))?;
        let (logits, _) = self.prefill(&mut session, &mut binding, &embeds, PREFILL_SLICE * hidden, 0, &mut cache)?;
        Ok(log_softmax(&logits))
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
        let cache_limit = self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner()).limit_bytes();
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
        // A cached prefix is taken out of the prefix cache while this prompt writes after it in the same
        // buffers, and put back at the end.
        let cached = key.and_then(|k| self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner()).take(k, prefix));
        let prefix_cache_hit = cached.is_some();

        let mut session = self.decoder.lock().unwrap_or_else(|p| p.into_inner());
        let mut binding = self.binding(&session)?;
        let slice = options.prefill_slice.max(1) * hidden;
        let shape = self.cache_shape();
        // Every position this generation may write: the prompt and the longest answer.
        let needed = prompt_tokens + options.max_new_tokens;
        // `position` counts the cache positions in use (RCC memory slots included).
        let (mut past, mut position) = match cached {
            Some(kv) => (self.reserve(&binding.allocator, kv, prefix, needed)?, prefix),
            None => {
                let capacity = capacity_for(needed, self.spec.context_length);
                let front = |i: usize| Ok(memory.as_ref().map_or(&[][..], |m| m.block(i / 2, i % 2)).to_vec());
                (KvCache::new(&binding.allocator, shape, capacity, memory_slots, front)?, memory_slots)
            }
        };
        if !prefix_cache_hit && key.is_some() {
            let prefix_rows = &embeds[..embedded_prefix * hidden];
            (_, position) = self.prefill(&mut session, &mut binding, prefix_rows, slice, position, &mut past)?;
        }
        let rest = &embeds[(position - memory_slots) * hidden..];
        let (logits, position) = self.prefill(&mut session, &mut binding, rest, slice, position, &mut past)?;
        let sources = Sources::of(options);
        // A retry decodes again from here: the prompt's positions of the cache are never overwritten.
        let prompt_end = Decoded { logits, position };
        let fallback_text =
            options.prompt_text.as_deref().filter(|_| options.extractive_fallback && sources.copy.is_none());
        let retry_from = (options.avoid_repeating.is_some() || fallback_text.is_some()).then(|| prompt_end.clone());
        let (mut token_ids, time_to_first_token) =
            self.decode(&mut session, &mut binding, &mut past, prompt_end, &sources, options, &[], started)?;
        if let (Some(avoided), Some(prompt_end)) = (options.avoid_repeating.as_deref().map(words), &retry_from) {
            // An answer that only repeats the question: decode again from the prompt's end with its
            // first token banned (each retry bans one more); the first answer stands if all repeat.
            let repeated =
                |ids: &[u32]| -> Result<bool> { Ok(repeats(&answer_text(&self.detokenize(ids)?, options), &avoided)) };
            let mut banned = Vec::new();
            let mut answer = token_ids.clone();
            while banned.len() < REPEAT_RETRIES && repeated(&answer)? {
                let Some(&first) = answer.first() else { break };
                banned.push(first);
                (answer, _) = self.decode(
                    &mut session,
                    &mut binding,
                    &mut past,
                    prompt_end.clone(),
                    &sources,
                    options,
                    &banned,
                    started,
                )?;
                if !repeated(&answer)? {
                    token_ids = answer.clone();
                }
            }
        }
        let mut replaced = None;
        if let (Some(text), Some(prompt_end)) = (fallback_text, retry_from) {
            // An answer with a word the prompt's text lacks: a span copied from the text instead.
            let text_words = words(text);
            let own = answer_text(&self.detokenize(&token_ids)?, options);
            if invents_words(&own, &text_words) {
                let copying = Sources { copy: Some(normalise(text)), spans: None };
                let (copied, _) =
                    self.decode(&mut session, &mut binding, &mut past, prompt_end, &copying, options, &[], started)?;
                let copied_text = answer_text(&self.detokenize(&copied)?, options);
                if keeps_copy(&own, &copied_text, &text_words) {
                    token_ids = copied;
                    replaced = Some(own);
                }
            }
        }
        if let Some(key) = key {
            let bytes = shape.bytes(past.capacity);
            self.prefix_cache.lock().unwrap_or_else(|p| p.into_inner()).insert(key, prefix, bytes, past);
        }
        let text = answer_text(&self.detokenize(&token_ids)?, options);
        Ok(Generation {
            text,
            token_ids,
            prompt_tokens,
            time_to_first_token,
            total: started.elapsed(),
            prefix_cache_hit,
            replaced,
        })
    }

    /// Greedy decoding under `options`' rules from the prompt's end (its last logits and KV cache),
    /// the first token never one of `banned_first`: the answer's token ids, up to and including the
    /// token that ends its first line (end of turn is not kept), and when its first token was chosen
    /// (counted from `started`).
    #[allow(clippy::too_many_arguments)]
    fn decode(
        &self,
        session: &mut Session,
        binding: &mut Binding,
        past: &mut KvCache,
        from: Decoded,
        sources: &Sources,
        options: &GenerateOptions,
        banned_first: &[u32],
        started: Instant,
    ) -> Result<(Vec<u32>, Duration)> {
        let Decoded { mut logits, mut position } = from;
        for &id in banned_first {
            if let Some(logit) = logits.get_mut(id as usize) {
                *logit = f32::NEG_INFINITY;
            }
        }
        let mut token_ids = Vec::new();
        let mut first_token = started.elapsed();
        while token_ids.len() < options.max_new_tokens {
            let next = next_token(self, &logits, &token_ids, sources, options)?;
            if token_ids.is_empty() {
                first_token = started.elapsed();
            }
            match ends(self, &token_ids, next, options)? {
                Some(End::Before) => break,
                Some(End::After) => {
                    // The token may carry text before its line break (".\n"): keep it, cut later.
                    token_ids.push(next);
                    break;
                }
                None => {}
            }
            token_ids.push(next);
            if token_ids.len() == options.max_new_tokens {
                break;
            }
            let embed = self.embed_tokens(&[next])?;
            logits = self.step(session, binding, &embed, position, past)?;
            position += 1;
        }
        Ok((token_ids, first_token))
    }

    /// `cache` (positions `0..len` in use) with room for `needed` positions: itself if it has it, else
    /// a larger cache holding the same first `len` positions.
    fn reserve(&self, allocator: &Allocator, cache: KvCache, len: usize, needed: usize) -> Result<KvCache> {
        if cache.capacity >= needed {
            return Ok(cache);
        }
        let capacity = capacity_for(needed, self.spec.context_length);
        KvCache::new(allocator, self.cache_shape(), capacity, len, |i| cache.front(i, len, self.cache_shape()))
    }

    /// The decoder's I/O binding: logits come back to host memory; the KV cache's buffers are allocated
    /// where the provider computes (GPU memory under CUDA), so decoding never copies the cache between
    /// host and device, and are bound as both the past and the present of each step.
    fn binding(&self, session: &Session) -> Result<Binding> {
        let err = |e: ort::Error| Error::inference("decoder", e);
        let memory = |device| MemoryInfo::new(device, 0, AllocatorType::Device, MemoryType::Default).map_err(err);
        let allocator = match self.provider {
            Provider::Cuda => Allocator::new(session, memory(AllocationDevice::CUDA)?).map_err(err)?,
            Provider::Cpu => Allocator::default(),
        };
        Ok(Binding { io: session.create_binding().map_err(err)?, host: memory(AllocationDevice::CPU)?, allocator })
    }

    /// Runs `embeds` (rows of hidden) at positions `position..` in slices of `slice` floats: the
    /// last row's logits (empty when there are no rows) and the position after it.
    fn prefill(
        &self,
        session: &mut Session,
        binding: &mut Binding,
        embeds: &[f32],
        slice: usize,
        mut position: usize,
        cache: &mut KvCache,
    ) -> Result<(Vec<f32>, usize)> {
        let mut logits = Vec::new();
        for rows in embeds.chunks(slice) {
            logits = self.step(session, binding, rows, position, cache)?;
            position += rows.len() / self.spec.hidden;
        }
        Ok((logits, position))
    }

    /// Runs `embeds` (rows of hidden) at positions `past..` after the first `past` positions of
    /// `cache`, whose buffers take the new keys and values in place (the caller makes room: `reserve`);
    /// returns the logits of the last position.
    fn step(
        &self,
        session: &mut Session,
        binding: &mut Binding,
        embeds: &[f32],
        past: usize,
        cache: &mut KvCache,
    ) -> Result<Vec<f32>> {
        let err = |e: ort::Error| Error::inference("decoder", e);
        let n = embeds.len() / self.spec.hidden;
        if past + n > cache.capacity {
            return Err(Error::inference(
                "decoder",
                format!("KV cache of {} positions cannot take {n} more after {past}", cache.capacity),
            ));
        }
        let Binding { io: binding, host, .. } = binding;
        // Logits are bound anew each step: a binding reuses the previous step's output value otherwise.
        binding.bind_output_to_device("logits", host).map_err(err)?;
        let positions: Vec<i64> = (past as i64..(past + n) as i64).collect();
        let total = (past + n) as i32;
        binding
            .bind_input("inputs_embeds", &Tensor::from_array(([1, n, self.spec.hidden], embeds.to_vec())).map_err(err)?)
            .map_err(err)?;
        binding.bind_input("position_ids", &Tensor::from_array(([1, n], positions)).map_err(err)?).map_err(err)?;
        binding.bind_input("seqlens_k", &Tensor::from_array(([1], vec![total - 1])).map_err(err)?).map_err(err)?;
        binding
            .bind_input("total_sequence_length", &Tensor::from_array((Vec::<i64>::new(), vec![total])).map_err(err)?)
            .map_err(err)?;
        for (tensor, (past, present)) in cache.tensors.iter_mut().zip(&self.cache_names) {
            binding.bind_input(past.as_str(), &*tensor).map_err(err)?;
            binding.bind_output(present.as_str(), &mut *tensor).map_err(err)?;
        }
        let outputs = session.run_binding(binding).map_err(err)?;
        let (_, logits) = outputs["logits"].try_extract_tensor::<f32>().map_err(err)?;
        Ok(logits.to_vec())
    }
}

/// Where decoding stands: the last position's logits, the KV cache holding positions `0..position`.
#[derive(Clone)]
struct Decoded {
    logits: Vec<f32>,
    position: usize,
}

/// An I/O binding, the memory its logits go to and the allocator of the KV cache's buffers.
struct Binding {
    io: IoBinding,
    host: MemoryInfo<'static>,
    allocator: Allocator,
}

/// The decoding rules' view of the decoder's tokenizer.
impl Vocabulary for Decoder {
    fn eos_ids(&self) -> &[u32] {
        &self.spec.eos_token_ids
    }
    fn digit_ids(&self) -> &[u32] {
        &self.digits
    }
    fn text_of(&self, ids: &[u32]) -> Result<String> {
        self.detokenize(ids)
    }
    fn opposite(&self, id: u32) -> Option<u32> {
        self.yes_no.iter().find_map(|&(yes, no)| if id == yes { Some(no) } else { (id == no).then_some(yes) })
    }
}

/// The single tokens that read "yes" and "no" in the same way, as pairs.
fn yes_no_pairs(tokenizer: &Tokenizer) -> Vec<(u32, u32)> {
    let single = |text: &str| match tokenizer.encode(text, false).map(|e| e.get_ids().to_vec()) {
        Ok(ids) if ids.len() == 1 => Some(ids[0]),
        _ => None,
    };
    let forms = [("yes", "no"), ("Yes", "No"), ("YES", "NO")];
    ["", " "]
        .iter()
        .flat_map(|space| forms.iter().map(move |(yes, no)| (format!("{space}{yes}"), format!("{space}{no}"))))
        .filter_map(|(yes, no)| Some((single(&yes)?, single(&no)?)))
        .collect()
}

/// Log-softmax of `logits` (computed from their maximum).
fn log_softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let total = logits.iter().map(|&l| (l - max).exp()).sum::<f32>().ln() + max;
    logits.iter().map(|&l| l - total).collect()
}
