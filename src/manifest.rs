//! `models/<name>/manifest.json`: what the export wrote (see onnx/FORMAT.md). The code reads
//! dims, files and the prompt template from here rather than hard-coding a model.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::runtime::ModelFiles;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EncoderSpec {
    pub file: String,
    pub tokenizer: String,
    pub source: String,
    pub dim: usize,
    pub max_positions: usize,
    pub pooling: String,
    pub normalized: bool,
    pub fingerprint: String,
    /// The float16 variant of `file` (`make setup GPU=1`); absent from older or CPU-only exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp16_file: Option<String>,
    /// The quantised variant of `file` for the CPU (`make setup`); absent from older exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantized_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DecoderSpec {
    pub file: String,
    pub embed_file: String,
    pub tokenizer: String,
    pub source: String,
    pub architecture: String,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub vocab: usize,
    pub context_length: usize,
    pub eos_token_ids: Vec<u32>,
    pub fingerprint: String,
    /// The float16 variant of `file` (`make setup GPU=1`); absent from older or CPU-only exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fp16_file: Option<String>,
    /// The quantised variant of `file` for the CPU (`make setup`); absent from older exports.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quantized_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdapterSpec {
    pub file: String,
    pub encoder_dim: usize,
    pub hidden: usize,
    pub encoder_fingerprint: String,
    pub decoder_fingerprint: String,
    #[serde(default)]
    pub source: String,
}

/// The RCC encoder (`rcc_encoder.onnx`): a copy of the decoder with its own LoRA merged, same inputs
/// and outputs as `decoder.onnx`. A chunk's memory is the keys (rotary undone) and values of every
/// `ratio`-th position and the last one, from every layer (`src/rcc.rs`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RccSpec {
    pub file: String,
    pub ratio: usize,
    /// A chunk is cut to this many decoder tokens before encoding.
    pub max_segment_tokens: usize,
    /// The rotary frequencies of the decoder (`head_dim / 2` values): keys are stored before rotary
    /// and rotated to their memory positions when asked.
    pub rope_inv_freq: Vec<f64>,
    /// Identity of the memory: decoder, RCC LoRA and ratio (stored with every chunk's memory).
    pub fingerprint: String,
    /// The decoder the memory was trained for: memory is refused by another.
    pub decoder_fingerprint: String,
    #[serde(default)]
    pub source: String,
}

/// The prompt layout shared by training and `ask`:
/// `prefix · context_prefix · CONTEXT · context_suffix · question_prefix · QUESTION · suffix`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PromptTemplate {
    pub prefix: String,
    pub context_prefix: String,
    pub context_suffix: String,
    pub question_prefix: String,
    pub suffix: String,
    pub chunk_separator: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub name: String,
    pub encoder: EncoderSpec,
    pub decoder: DecoderSpec,
    #[serde(default)]
    pub adapter: Option<AdapterSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rcc: Option<RccSpec>,
    pub prompt: PromptTemplate,
    pub files: BTreeMap<String, String>,
    /// Where the manifest was read from (not serialised).
    #[serde(skip)]
    pub dir: PathBuf,
}

impl Manifest {
    /// Reads and sanity-checks `dir/manifest.json`: the directory exists, every listed file exists.
    /// Content hashes are checked by [`Manifest::verify`] (hashing ~700 MB costs seconds).
    pub fn load(dir: &Path) -> Result<Manifest> {
        if !dir.is_dir() {
            return Err(Error::ModelsMissing { path: dir.to_path_buf() });
        }
        let path = dir.join("manifest.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::model_file(&path, e))?;
        let mut manifest: Manifest = serde_json::from_str(&text).map_err(|e| Error::manifest(&path, e))?;
        if manifest.format_version != FORMAT_VERSION {
            return Err(Error::manifest(
                path,
                format!(
                    "format_version {} is not the supported {FORMAT_VERSION}: re-run `make setup`",
                    manifest.format_version
                ),
            ));
        }
        manifest.dir = dir.to_path_buf();
        for name in manifest.files.keys() {
            let file = dir.join(name);
            if !file.is_file() {
                return Err(Error::model_file(file, "listed in manifest.json but absent"));
            }
        }
        for required in [
            Some(&manifest.encoder.file),
            Some(&manifest.encoder.tokenizer),
            Some(&manifest.decoder.file),
            Some(&manifest.decoder.embed_file),
            Some(&manifest.decoder.tokenizer),
            manifest.encoder.fp16_file.as_ref(),
            manifest.decoder.fp16_file.as_ref(),
            manifest.encoder.quantized_file.as_ref(),
            manifest.decoder.quantized_file.as_ref(),
            manifest.rcc.as_ref().map(|r| &r.file),
        ]
        .into_iter()
        .flatten()
        {
            if !manifest.files.contains_key(required.as_str()) {
                return Err(Error::manifest(&path, format!("`files` lacks {required}")));
            }
        }
        Ok(manifest)
    }

    pub fn path_of(&self, file: &str) -> PathBuf {
        self.dir.join(file)
    }

    /// The encoder graph and its float16 and quantised variants, if exported.
    pub fn encoder_files(&self) -> ModelFiles {
        ModelFiles {
            role: "encoder",
            fp32: self.path_of(&self.encoder.file),
            fp16: self.encoder.fp16_file.as_ref().map(|f| self.path_of(f)),
            quantized: self.encoder.quantized_file.as_ref().map(|f| self.path_of(f)),
        }
    }

    /// The decoder graph and its float16 and quantised variants, if exported.
    pub fn decoder_files(&self) -> ModelFiles {
        ModelFiles {
            role: "decoder",
            fp32: self.path_of(&self.decoder.file),
            fp16: self.decoder.fp16_file.as_ref().map(|f| self.path_of(f)),
            quantized: self.decoder.quantized_file.as_ref().map(|f| self.path_of(f)),
        }
    }

    /// Checks the sha256 of every file against the manifest.
    pub fn verify(&self) -> Result<()> {
        for (name, expected) in &self.files {
            let path = self.dir.join(name);
            let actual = sha256_file(&path)?;
            if &actual != expected {
                return Err(Error::model_file(
                    path,
                    format!("sha256 {actual} differs from the manifest's {expected} (corrupt or replaced)"),
                ));
            }
        }
        Ok(())
    }
}

pub fn sha256_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let mut file = std::fs::File::open(path).map_err(|e| Error::model_file(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex(&hasher.finalize()))
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
