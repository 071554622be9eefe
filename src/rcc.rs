//! RCC memory (recurrent context compression, the sibling of E2LLM): per chunk, the keys and values
//! that the RCC encoder — a copy of the decoder with its own trained LoRA — keeps from every layer at
//! every `ratio`-th position and the last one. At answer time the memory of the chosen chunks goes
//! straight into the decoder's KV cache in front of the prompt (positions 0..M-1), so the decoder
//! reads it at every layer as it reads any earlier token; nothing is prefilled for it.
//!
//! Keys are stored before rotary (position-free) and rotated to their memory positions when asked.
//! Each chunk is encoded alone: `compress` stays parallel and resumable per document; the
//! "recurrence" across chunks is left to the decoder, which reads all chunks' memory in order.
//!
//! Storage: `chunk_memory.memory`, little-endian float16 `[layers, 2 (key, value), kv_heads, slots,
//! head_dim]`, with the RCC encoder's fingerprint (memory of another encoder is refused).

use std::sync::Mutex;

use half::f16;
use ort::session::Session;
use ort::value::{DynValue, Tensor};
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::manifest::{DecoderSpec, Manifest, RccSpec};
use crate::runtime::{self, Device, Provider};

/// The dims of a memory slot: what a KV cache holds per position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryShape {
    pub layers: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl MemoryShape {
    pub fn of(decoder: &DecoderSpec) -> MemoryShape {
        MemoryShape { layers: decoder.layers, kv_heads: decoder.kv_heads, head_dim: decoder.head_dim }
    }

    /// Floats per slot (all layers, keys and values).
    pub fn per_slot(&self) -> usize {
        self.layers * 2 * self.kv_heads * self.head_dim
    }
}

/// Memory slots of one or more chunks, laid out `[layer][key|value][kv_head][slot][head_dim]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Memory {
    pub shape: MemoryShape,
    pub slots: usize,
    pub data: Vec<f32>,
}

impl Memory {
    pub fn empty(shape: MemoryShape) -> Memory {
        Memory { shape, slots: 0, data: Vec::new() }
    }

    /// The float16 BLOB stored in `chunk_memory.memory`.
    pub fn to_blob(&self) -> Vec<u8> {
        self.data.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect()
    }

    /// Reads a stored BLOB of `slots` slots; its length and every value are checked.
    pub fn from_blob(blob: &[u8], slots: usize, shape: MemoryShape) -> std::result::Result<Memory, String> {
        let expected = slots * shape.per_slot() * 2;
        if blob.len() != expected {
            return Err(format!(
                "memory BLOB has {} bytes, expected {expected} ({slots} slots x {} float16 values)",
                blob.len(),
                shape.per_slot()
            ));
        }
        let data: Vec<f32> = blob.chunks_exact(2).map(|b| f16::from_le_bytes([b[0], b[1]]).to_f32()).collect();
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            return Err(format!("memory BLOB holds a non-finite value at index {i}"));
        }
        Ok(Memory { shape, slots, data })
    }

    /// The memories of several chunks one after the other (slots in order).
    pub fn concat(parts: &[Memory], shape: MemoryShape) -> Memory {
        let slots: usize = parts.iter().map(|p| p.slots).sum();
        let hd = shape.head_dim;
        let mut data = Vec::with_capacity(slots * shape.per_slot());
        for block in 0..shape.layers * 2 * shape.kv_heads {
            for part in parts {
                let rows = part.slots * hd;
                data.extend_from_slice(&part.data[block * rows..(block + 1) * rows]);
            }
        }
        Memory { shape, slots, data }
    }

    /// The keys (`kind` 0) or values (1) of `layer`: `[kv_heads, slots, head_dim]`.
    pub fn block(&self, layer: usize, kind: usize) -> &[f32] {
        let size = self.shape.kv_heads * self.slots * self.shape.head_dim;
        let start = (layer * 2 + kind) * size;
        &self.data[start..start + size]
    }

    /// Applies the rotary embedding to every key as if slot `s` sat at position `start + s`
    /// (`inverse`: undoes it). "Rotate half" layout, as the decoder graph.
    pub fn rotate_keys(&mut self, inv_freq: &[f64], positions: &[usize], inverse: bool) {
        let (hd, half) = (self.shape.head_dim, self.shape.head_dim / 2);
        let size = self.shape.kv_heads * self.slots * hd;
        let sign = if inverse { -1.0 } else { 1.0 };
        for layer in 0..self.shape.layers {
            let keys = &mut self.data[layer * 2 * size..layer * 2 * size + size];
            for head in 0..self.shape.kv_heads {
                for (slot, &position) in positions.iter().enumerate().take(self.slots) {
                    let row = &mut keys[(head * self.slots + slot) * hd..][..hd];
                    for d in 0..half {
                        let angle = sign * position as f64 * inv_freq[d];
                        let (sin, cos) = angle.sin_cos();
                        let (a, b) = (row[d] as f64, row[d + half] as f64);
                        row[d] = (a * cos - b * sin) as f32;
                        row[d + half] = (b * cos + a * sin) as f32;
                    }
                }
            }
        }
    }

    /// The memory placed at positions 0..slots-1 of the KV cache (keys rotated there).
    pub fn placed(mut self, inv_freq: &[f64]) -> Memory {
        let positions: Vec<usize> = (0..self.slots).collect();
        self.rotate_keys(inv_freq, &positions, false);
        self
    }
}

/// Positions whose keys and values a chunk of `n` tokens keeps: every `ratio`-th and the last.
pub fn slot_positions(n: usize, ratio: usize) -> Vec<usize> {
    let ratio = ratio.max(1);
    (0..n.div_ceil(ratio)).map(|j| ((j + 1) * ratio).min(n) - 1).collect()
}

pub struct RccEncoder {
    embed: Mutex<Session>,
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    spec: RccSpec,
    shape: MemoryShape,
    hidden: usize,
    provider: Provider,
}

impl RccEncoder {
    pub fn load(manifest: &Manifest, device: Device, threads: usize) -> Result<RccEncoder> {
        let spec = manifest.rcc.clone().ok_or_else(|| Error::RccMissing {
            hint: "train it (`make train-rcc`, or use the committed onnx/rcc/lora.safetensors) and re-export \
                   (`make setup`)"
                .into(),
        })?;
        if spec.decoder_fingerprint != manifest.decoder.fingerprint {
            return Err(Error::manifest(
                manifest.path_of("manifest.json"),
                format!(
                    "the RCC encoder was trained for decoder {} but the decoder is {}: re-run `make setup`",
                    spec.decoder_fingerprint, manifest.decoder.fingerprint
                ),
            ));
        }
        if spec.rope_inv_freq.len() != manifest.decoder.head_dim / 2 || spec.ratio == 0 {
            return Err(Error::manifest(
                manifest.path_of("manifest.json"),
                "rcc: rope_inv_freq must hold head_dim / 2 values and ratio be at least 1",
            ));
        }
        let decoder = &manifest.decoder;
        let tokenizer_path = manifest.path_of(&decoder.tokenizer);
        let tokenizer = runtime::load_tokenizer(&tokenizer_path, "decoder")?;
        let (embed, _) = runtime::session(&manifest.dir, &manifest.path_of(&decoder.embed_file), device, 1)?;
        let (session, provider) = runtime::session(&manifest.dir, &manifest.path_of(&spec.file), device, threads)?;
        Ok(RccEncoder {
            embed: Mutex::new(embed),
            session: Mutex::new(session),
            tokenizer,
            spec,
            shape: MemoryShape::of(decoder),
            hidden: decoder.hidden,
            provider,
        })
    }

    pub fn fingerprint(&self) -> &str {
        &self.spec.fingerprint
    }
    pub fn spec(&self) -> &RccSpec {
        &self.spec
    }
    pub fn shape(&self) -> MemoryShape {
        self.shape
    }
    pub fn provider(&self) -> Provider {
        self.provider
    }

    /// Decoder tokens of a chunk, cut to `max_segment_tokens`.
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let encoding = self.tokenizer.encode(text, false).map_err(|e| Error::tokenizer("decoder", e))?;
        let mut ids = encoding.get_ids().to_vec();
        ids.truncate(self.spec.max_segment_tokens);
        Ok(ids)
    }

    /// The memory of one chunk's text.
    pub fn memory(&self, text: &str) -> Result<Memory> {
        let ids = self.tokenize(text)?;
        let n = ids.len();
        if n == 0 {
            return Ok(Memory::empty(self.shape));
        }
        let err = |e: ort::Error| Error::inference("rcc encoder", e);
        let embeds = {
            let mut session = self.embed.lock().unwrap_or_else(|p| p.into_inner());
            let ids: Vec<i64> = ids.iter().map(|&id| id as i64).collect();
            let outputs = session
                .run(ort::inputs!["input_ids" => Tensor::from_array(([1, n], ids)).map_err(err)?])
                .map_err(err)?;
            let (_, data) = outputs["inputs_embeds"].try_extract_tensor::<f32>().map_err(err)?;
            data.to_vec()
        };
        let MemoryShape { layers, kv_heads, head_dim } = self.shape;
        let mut inputs: Vec<(String, DynValue)> = vec![
            ("inputs_embeds".into(), Tensor::from_array(([1, n, self.hidden], embeds)).map_err(err)?.into_dyn()),
            ("attention_mask".into(), Tensor::from_array(([1, n], vec![1i64; n])).map_err(err)?.into_dyn()),
            (
                "position_ids".into(),
                Tensor::from_array(([1, n], (0..n as i64).collect::<Vec<_>>())).map_err(err)?.into_dyn(),
            ),
        ];
        for layer in 0..layers {
            for kind in ["key", "value"] {
                let empty = Tensor::from_array(([1, kv_heads, 0, head_dim], Vec::<f32>::new())).map_err(err)?;
                inputs.push((format!("past_key_values.{layer}.{kind}"), empty.into_dyn()));
            }
        }
        let positions = slot_positions(n, self.spec.ratio);
        let slots = positions.len();
        let mut data = Vec::with_capacity(slots * self.shape.per_slot());
        {
            let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
            let outputs = session.run(inputs).map_err(err)?;
            for layer in 0..layers {
                for kind in ["key", "value"] {
                    let (_, present) =
                        outputs[format!("present.{layer}.{kind}").as_str()].try_extract_tensor::<f32>().map_err(err)?;
                    if present.len() != kv_heads * n * head_dim {
                        return Err(Error::inference(
                            "rcc encoder",
                            format!("present.{layer}.{kind} has the wrong size"),
                        ));
                    }
                    for head in 0..kv_heads {
                        for &p in &positions {
                            data.extend_from_slice(&present[(head * n + p) * head_dim..][..head_dim]);
                        }
                    }
                }
            }
        }
        let mut memory = Memory { shape: self.shape, slots, data };
        memory.rotate_keys(&self.spec.rope_inv_freq, &positions, true);
        Ok(memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape() -> MemoryShape {
        MemoryShape { layers: 2, kv_heads: 2, head_dim: 4 }
    }

    fn memory(slots: usize, offset: f32) -> Memory {
        let data = (0..slots * shape().per_slot()).map(|i| offset + i as f32 * 0.25).collect();
        Memory { shape: shape(), slots, data }
    }

    #[test]
    fn slots_are_every_ratio_th_position_and_the_last() {
        assert_eq!(slot_positions(0, 32), Vec::<usize>::new());
        assert_eq!(slot_positions(5, 32), vec![4]);
        assert_eq!(slot_positions(64, 32), vec![31, 63]);
        assert_eq!(slot_positions(70, 32), vec![31, 63, 69]);
    }

    #[test]
    fn blobs_round_trip_and_bad_ones_are_refused() {
        let m = memory(3, -7.0);
        let back = Memory::from_blob(&m.to_blob(), 3, shape()).unwrap();
        for (a, b) in m.data.iter().zip(&back.data) {
            assert!((a - b).abs() <= a.abs() * 1e-3 + 1e-3, "{a} vs {b}");
        }
        let err = Memory::from_blob(&m.to_blob()[1..], 3, shape()).unwrap_err();
        assert!(err.contains("expected"), "{err}");
        let mut blob = m.to_blob();
        blob[2..4].copy_from_slice(&f16::NAN.to_le_bytes());
        assert!(Memory::from_blob(&blob, 3, shape()).unwrap_err().contains("non-finite"));
    }

    #[test]
    fn concatenation_keeps_each_block_in_slot_order() {
        let (a, b) = (memory(1, 0.0), memory(2, 100.0));
        let both = Memory::concat(&[a.clone(), b.clone()], shape());
        assert_eq!(both.slots, 3);
        for layer in 0..2 {
            for kind in 0..2 {
                let block = both.block(layer, kind);
                // head 0: a's slot then b's two slots
                assert_eq!(&block[..4], &a.block(layer, kind)[..4]);
                assert_eq!(&block[4..12], &b.block(layer, kind)[..8]);
            }
        }
    }

    #[test]
    fn rotary_is_undone_exactly_and_only_touches_keys() {
        let inv_freq = [1.0, 0.01];
        let original = memory(2, 1.0);
        let mut m = original.clone();
        m.rotate_keys(&inv_freq, &[5, 9], false);
        assert_ne!(m.block(0, 0), original.block(0, 0));
        assert_eq!(m.block(1, 1), original.block(1, 1));
        m.rotate_keys(&inv_freq, &[5, 9], true);
        for (a, b) in m.data.iter().zip(&original.data) {
            assert!((a - b).abs() < 1e-4);
        }
    }
}
