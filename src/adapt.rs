//! The E2LLM adapter: encoder chunk vectors → soft tokens in the decoder's embedding space
//! (2-layer MLP with GELU, trained in `onnx/`). Refuses weights that do not match the loaded models.

use std::sync::Mutex;

use ort::session::Session;
use ort::value::Tensor;

use crate::error::{Error, Result};
use crate::manifest::{AdapterSpec, Manifest};
use crate::runtime::{self, Device};

pub struct Adapter {
    session: Mutex<Session>,
    spec: AdapterSpec,
}

impl Adapter {
    /// Checks the manifest's adapter against its encoder and decoder before loading it.
    pub fn check(manifest: &Manifest) -> Result<&AdapterSpec> {
        let spec = manifest.adapter.as_ref().ok_or_else(|| Error::AdapterMissing {
            mode: String::new(),
            hint: "no trained adapter weights in onnx/adapter/ were exported; use --mode rag or full, \
                   or train one (`make train`) and re-run `make setup`"
                .into(),
        })?;
        let mismatch = |what: &str, adapter: &dyn std::fmt::Display, model: &dyn std::fmt::Display| {
            Err(Error::AdapterMismatch {
                reason: format!(
                    "adapter {what} is {adapter} but the models have {model}; retrain the adapter for these models"
                ),
            })
        };
        if spec.encoder_dim != manifest.encoder.dim {
            return mismatch("encoder dim", &spec.encoder_dim, &manifest.encoder.dim);
        }
        if spec.hidden != manifest.decoder.hidden {
            return mismatch("decoder hidden size", &spec.hidden, &manifest.decoder.hidden);
        }
        if spec.encoder_fingerprint != manifest.encoder.fingerprint {
            return mismatch("encoder fingerprint", &spec.encoder_fingerprint, &manifest.encoder.fingerprint);
        }
        if spec.decoder_fingerprint != manifest.decoder.fingerprint {
            return mismatch("decoder fingerprint", &spec.decoder_fingerprint, &manifest.decoder.fingerprint);
        }
        Ok(spec)
    }

    pub fn load(manifest: &Manifest, device: Device) -> Result<Adapter> {
        let spec = Adapter::check(manifest)?.clone();
        let (session, _) = runtime::session(&manifest.dir, &manifest.path_of(&spec.file), device, 1)?;
        Ok(Adapter { session: Mutex::new(session), spec })
    }

    pub fn spec(&self) -> &AdapterSpec {
        &self.spec
    }

    /// Maps `vectors` (rows of encoder dim) to soft tokens (rows of decoder hidden).
    pub fn adapt(&self, vectors: &[f32]) -> Result<Vec<f32>> {
        let rows = vectors.len() / self.spec.encoder_dim;
        if rows == 0 {
            return Ok(Vec::new());
        }
        let err = |e: ort::Error| Error::inference("adapter", e);
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        let outputs = session
            .run(ort::inputs!["vectors" => Tensor::from_array(([rows, self.spec.encoder_dim], vectors.to_vec())).map_err(err)?])
            .map_err(err)?;
        let (_, data) = outputs["soft_tokens"].try_extract_tensor::<f32>().map_err(err)?;
        Ok(data.to_vec())
    }
}
