//! The models of one models directory, loaded lazily and once: the CLI and the SQLite extension
//! share an `Engine`, so a process pays each model's loading once, never per call.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use crate::adapt::Adapter;
use crate::decode::Decoder;
use crate::encode::Encoder;
use crate::error::{Error, Result};
use crate::manifest::Manifest;
use crate::rcc::RccEncoder;
use crate::runtime::{self, Device, Precision, Provider};

#[derive(Debug, Clone)]
pub struct EngineOptions {
    pub models_dir: PathBuf,
    pub device: Device,
    /// Encoder and decoder precision; `None`: `E2LLM_PRECISION`, else auto (read by `Engine::new`,
    /// which stores the value it used here).
    pub precision: Option<Precision>,
    /// Threads for inference (encoder sessions, decoder intra-op threads).
    pub threads: usize,
}

impl EngineOptions {
    pub fn new(models_dir: impl Into<PathBuf>) -> Self {
        EngineOptions {
            models_dir: models_dir.into(),
            device: Device::Cpu,
            precision: None,
            threads: runtime::available_threads(),
        }
    }
}

/// The default models directory: `E2LLM_MODELS`, else `models/default` in the current directory,
/// else `models/default` next to the project that built this binary.
pub fn default_models_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("E2LLM_MODELS") {
        return PathBuf::from(dir);
    }
    let local = PathBuf::from("models/default");
    if local.is_dir() {
        return local;
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models/default")
}

pub struct Engine {
    options: EngineOptions,
    manifest: Manifest,
    encoder: OnceLock<Arc<Encoder>>,
    decoder: OnceLock<Arc<Decoder>>,
    adapter: OnceLock<Arc<Adapter>>,
    rcc: OnceLock<Arc<RccEncoder>>,
    loading: Mutex<()>,
}

impl Engine {
    /// Reads the manifest and loads ONNX Runtime; models load on first use.
    pub fn new(mut options: EngineOptions) -> Result<Engine> {
        options.precision = Some(options.precision.map_or_else(Precision::from_env, Ok)?);
        let manifest = Manifest::load(&options.models_dir)?;
        runtime::environment(&options.models_dir)?;
        Ok(Engine {
            options,
            manifest,
            encoder: OnceLock::new(),
            decoder: OnceLock::new(),
            adapter: OnceLock::new(),
            rcc: OnceLock::new(),
            loading: Mutex::new(()),
        })
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    pub fn options(&self) -> &EngineOptions {
        &self.options
    }

    /// The precision asked for (fp32, fp16 or auto).
    pub fn requested_precision(&self) -> Precision {
        self.options.precision.unwrap_or_default()
    }

    /// The precision the encoder and decoder run in (or will, once loaded) on `provider`; an error
    /// when fp16 is asked for and a variant is missing.
    pub fn precisions(&self, provider: Provider) -> Result<(Precision, Precision)> {
        let requested = self.requested_precision();
        let (_, encoder) = self.manifest.encoder_files().choose(requested, provider)?;
        let (_, decoder) = self.manifest.decoder_files().choose(requested, provider)?;
        Ok((encoder, decoder))
    }

    fn get_or_load<T>(&self, cell: &OnceLock<Arc<T>>, load: impl FnOnce() -> Result<T>) -> Result<Arc<T>> {
        if let Some(value) = cell.get() {
            return Ok(value.clone());
        }
        let _guard = self.loading.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(value) = cell.get() {
            return Ok(value.clone());
        }
        let value = Arc::new(load()?);
        let _ = cell.set(value.clone());
        Ok(value)
    }

    pub fn encoder(&self) -> Result<Arc<Encoder>> {
        self.get_or_load(&self.encoder, || {
            Encoder::load(&self.manifest, self.options.device, self.requested_precision(), self.options.threads)
        })
    }

    pub fn decoder(&self) -> Result<Arc<Decoder>> {
        self.get_or_load(&self.decoder, || {
            Decoder::load(&self.manifest, self.options.device, self.requested_precision(), self.options.threads)
        })
    }

    /// The trained adapter; a clear error naming `mode` when there is none.
    pub fn adapter(&self, mode: &str) -> Result<Arc<Adapter>> {
        self.get_or_load(&self.adapter, || Adapter::load(&self.manifest, self.options.device)).map_err(|e| match e {
            Error::AdapterMissing { hint, .. } => Error::AdapterMissing { mode: mode.to_string(), hint },
            other => other,
        })
    }

    /// The RCC encoder (`compress --rcc`); a clear error when the models directory has none.
    pub fn rcc(&self) -> Result<Arc<RccEncoder>> {
        self.get_or_load(&self.rcc, || RccEncoder::load(&self.manifest, self.options.device, self.options.threads))
    }

    /// What is loaded now, for `info` and `e2llm_version()`.
    pub fn loaded(&self) -> Vec<&'static str> {
        let mut loaded = Vec::new();
        if self.encoder.get().is_some() {
            loaded.push("encoder");
        }
        if self.decoder.get().is_some() {
            loaded.push("decoder");
        }
        if self.adapter.get().is_some() {
            loaded.push("adapter");
        }
        if self.rcc.get().is_some() {
            loaded.push("rcc encoder");
        }
        loaded
    }
}
