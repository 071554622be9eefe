//! The sentence encoder on ONNX Runtime: token ids in, one L2-normalised vector per row out.
//! Rows are sorted by length and batched (less padding); one session runs the batches with
//! intra-op threads. (A pool of single-threaded sessions fed by rayon measured slower here:
//! 25 vs 35 chunks/s on 2 cores.)

use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;
use tokenizers::Tokenizer;

use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::runtime::{self, Device, Precision, Provider};

pub const DEFAULT_BATCH_SIZE: usize = 32;

/// Vectors of `dim` components each, row-major.
#[derive(Debug, Clone, PartialEq)]
pub struct Vectors {
    pub dim: usize,
    pub data: Vec<f32>,
}

impl Vectors {
    pub fn len(&self) -> usize {
        self.data.len() / self.dim.max(1)
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.dim..(i + 1) * self.dim]
    }
}

pub struct Encoder {
    session: Mutex<Session>,
    tokenizer: Tokenizer,
    dim: usize,
    max_positions: usize,
    cls: u32,
    sep: u32,
    pad: u32,
    fingerprint: String,
    source: String,
    provider: Provider,
    precision: Precision,
}

impl Encoder {
    /// Loads the encoder (its float16 variant if `precision` says so) with `threads` intra-op threads.
    pub fn load(manifest: &Manifest, device: Device, precision: Precision, threads: usize) -> Result<Encoder> {
        let spec = &manifest.encoder;
        let tokenizer_path = manifest.path_of(&spec.tokenizer);
        let tokenizer = runtime::load_tokenizer(&tokenizer_path, "encoder")?;
        let special = |token: &str| {
            tokenizer.token_to_id(token).ok_or_else(|| {
                Error::tokenizer(format!("encoder {}", tokenizer_path.display()), format!("has no {token} token"))
            })
        };
        let (cls, sep, pad) = (special("[CLS]")?, special("[SEP]")?, special("[PAD]")?);
        let files = manifest.encoder_files();
        let (session, provider, precision) = runtime::model_session(&manifest.dir, &files, device, precision, threads)?;
        Ok(Encoder {
            session: Mutex::new(session),
            tokenizer,
            dim: spec.dim,
            max_positions: spec.max_positions,
            cls,
            sep,
            pad,
            fingerprint: spec.fingerprint.clone(),
            source: spec.source.clone(),
            provider,
            precision,
        })
    }

    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
    pub fn dim(&self) -> usize {
        self.dim
    }
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }
    pub fn source(&self) -> &str {
        &self.source
    }
    pub fn provider(&self) -> Provider {
        self.provider
    }
    /// The precision of the graph that runs (fp32, fp16 or quantized).
    pub fn precision(&self) -> Precision {
        self.precision
    }
    /// Longest content (special tokens excluded) one row may have.
    pub fn max_content_tokens(&self) -> usize {
        self.max_positions - 2
    }

    /// Embeds texts (questions, `e2llm_embed`): tokenised, cut to the encoder's window.
    pub fn embed(&self, texts: &[&str], batch_size: usize) -> Result<Vectors> {
        let rows: Vec<Vec<u32>> = texts
            .iter()
            .map(|text| {
                let encoding = self.tokenizer.encode(*text, false).map_err(|e| Error::tokenizer("encoder", e))?;
                let ids = encoding.get_ids();
                Ok(ids[..ids.len().min(self.max_content_tokens())].to_vec())
            })
            .collect::<Result<_>>()?;
        let views: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
        self.embed_ids(&views, batch_size)
    }

    /// Embeds rows of content token ids (no special tokens; `[CLS]`/`[SEP]` are added here).
    /// Output rows are in input order. With the float32 graph a row's vector does not depend on its
    /// batch; the quantised one quantises activations per row, so only the kernel's row tiling moves
    /// it, slightly (cosine ≥ 0.998).
    pub fn embed_ids(&self, rows: &[&[u32]], batch_size: usize) -> Result<Vectors> {
        if let Some(long) = rows.iter().find(|r| r.len() > self.max_content_tokens()) {
            return Err(Error::Invalid(format!(
                "encoder row of {} tokens exceeds the encoder's {} positions",
                long.len() + 2,
                self.max_positions
            )));
        }
        let mut order: Vec<usize> = (0..rows.len()).collect();
        order.sort_by_key(|&i| rows[i].len());
        let mut data = vec![0f32; rows.len() * self.dim];
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        for batch in order.chunks(batch_size.max(1)) {
            let vectors = self.run_batch(&mut session, rows, batch)?;
            for (&index, vector) in batch.iter().zip(vectors.chunks_exact(self.dim)) {
                data[index * self.dim..(index + 1) * self.dim].copy_from_slice(vector);
            }
        }
        Ok(Vectors { dim: self.dim, data })
    }

    fn run_batch(&self, session: &mut Session, rows: &[&[u32]], batch: &[usize]) -> Result<Vec<f32>> {
        let width = batch.iter().map(|&i| rows[i].len()).max().unwrap_or(0) + 2;
        let mut ids = vec![self.pad as i64; batch.len() * width];
        let mut mask = vec![0i64; batch.len() * width];
        for (b, &i) in batch.iter().enumerate() {
            let row = &mut ids[b * width..(b + 1) * width];
            row[0] = self.cls as i64;
            for (slot, &id) in row[1..].iter_mut().zip(rows[i]) {
                *slot = id as i64;
            }
            row[rows[i].len() + 1] = self.sep as i64;
            mask[b * width..b * width + rows[i].len() + 2].fill(1);
        }
        let shape = [batch.len(), width];
        let err = |e: ort::Error| Error::inference("encoder", e);
        let outputs = session
            .run(ort::inputs![
                "input_ids" => Tensor::from_array((shape, ids)).map_err(err)?,
                "attention_mask" => Tensor::from_array((shape, mask)).map_err(err)?,
            ])
            .map_err(err)?;
        let (out_shape, data) = outputs["embedding"].try_extract_tensor::<f32>().map_err(err)?;
        if out_shape.len() != 2 || out_shape[1] as usize != self.dim || out_shape[0] as usize != batch.len() {
            return Err(Error::inference("encoder", format!("unexpected output shape {out_shape:?}")));
        }
        Ok(data.to_vec())
    }
}
