//! ONNX Runtime: finding and loading the shared library once per process, choosing the execution
//! provider, and building sessions. Everything that touches `ort` setup lives here, so CPU/CUDA
//! differences stay in one place.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::error::{Error, Result};

/// A Hugging Face `tokenizers` file of the models directory; `role` (encoder, decoder) names it in errors.
pub fn load_tokenizer(path: &Path, role: &str) -> Result<tokenizers::Tokenizer> {
    tokenizers::Tokenizer::from_file(path).map_err(|e| Error::tokenizer(format!("{role} {}", path.display()), e))
}

/// Where inference runs. `Auto` tries CUDA and falls back to CPU, reporting which it used;
/// `Cuda` never falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
    #[value(alias = "gpu")]
    Cuda,
    Auto,
}

impl Device {
    /// `E2LLM_DEVICE` (cpu|cuda|auto), else CPU.
    pub fn from_env() -> Result<Device> {
        match std::env::var("E2LLM_DEVICE") {
            Ok(value) => Device::parse(&value),
            Err(_) => Ok(Device::Cpu),
        }
    }

    /// The names clap takes for `--device` (one list: `E2LLM_DEVICE` in SQL reads the same); empty is CPU.
    pub fn parse(value: &str) -> Result<Device> {
        match value.trim() {
            "" => Ok(Device::Cpu),
            value => crate::error::parse_value("device", value),
        }
    }
}

/// Numeric precision of the encoder and decoder graphs. A models directory may hold, beside each
/// float32 graph, a float16 variant (for the GPU: `make setup GPU=1`) and a quantised one (for the CPU:
/// 8-bit weights; `make setup` builds them). `Auto` runs the float16 variant
/// under CUDA and the quantised one on the CPU when the directory has them, float32 otherwise (the
/// encoder's quantised vectors are interchangeable with float32 ones: reports/quantized.md). `Fp16` and
/// `Quantized` insist on their variants (an error names the missing file) on either provider; on the
/// CPU, ONNX Runtime runs the float16 nodes it has no CPU kernel for in float32: slower than `Fp32`,
/// for parity checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    #[value(alias = "float32")]
    Fp32,
    #[value(alias = "float16")]
    Fp16,
    #[value(aliases = ["quantised", "int8"])]
    Quantized,
    #[default]
    Auto,
}

impl Precision {
    /// `E2LLM_PRECISION` (fp32|fp16|quantized|auto), else `Auto`.
    pub fn from_env() -> Result<Precision> {
        match std::env::var("E2LLM_PRECISION") {
            Ok(value) => Precision::parse(&value),
            Err(_) => Ok(Precision::Auto),
        }
    }

    /// The names clap takes for `--precision` (`E2LLM_PRECISION` reads the same); empty is auto.
    pub fn parse(value: &str) -> Result<Precision> {
        match value.trim() {
            "" => Ok(Precision::Auto),
            value => crate::error::parse_value("precision", value),
        }
    }

    /// The precision a model runs in on `provider`, given which variants the models directory has
    /// (`has(p)`: is there a graph of precision `p`); `None` when a missing variant is asked for.
    pub fn resolve(self, provider: Provider, has: impl Fn(Precision) -> bool) -> Option<Precision> {
        match self {
            Precision::Auto => {
                let preferred = match provider {
                    Provider::Cuda => Precision::Fp16,
                    Provider::Cpu => Precision::Quantized,
                };
                Some(if has(preferred) { preferred } else { Precision::Fp32 })
            }
            Precision::Fp32 => Some(Precision::Fp32),
            variant => has(variant).then_some(variant),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&crate::error::value_name(self))
    }
}

/// A model's float32 graph and the variants the export wrote beside it (see [`Precision`]).
#[derive(Debug, Clone)]
pub struct ModelFiles {
    /// What the model is, for errors: "encoder", "decoder".
    pub role: &'static str,
    pub fp32: PathBuf,
    pub fp16: Option<PathBuf>,
    pub quantized: Option<PathBuf>,
}

impl ModelFiles {
    /// A float32 graph without variants.
    pub fn single(role: &'static str, fp32: PathBuf) -> ModelFiles {
        ModelFiles { role, fp32, fp16: None, quantized: None }
    }

    /// The graph of `precision` (`None` for a variant the export did not write, and for `Auto`).
    pub fn variant(&self, precision: Precision) -> Option<&Path> {
        match precision {
            Precision::Fp32 => Some(&self.fp32),
            Precision::Fp16 => self.fp16.as_deref(),
            Precision::Quantized => self.quantized.as_deref(),
            Precision::Auto => None,
        }
    }

    /// The file to load for `precision` on `provider`, and the precision it has; an error naming the
    /// missing file when a variant is asked for that the export did not write.
    pub fn choose(&self, precision: Precision, provider: Provider) -> Result<(&Path, Precision)> {
        let chosen = precision.resolve(provider, |p| self.variant(p).is_some());
        match chosen.and_then(|p| self.variant(p).map(|file| (file, p))) {
            Some(found) => Ok(found),
            None => {
                let dir = self.fp32.parent().unwrap_or(Path::new(".")).to_path_buf();
                let name = self.fp32.file_name().and_then(|n| n.to_str()).unwrap_or("model.onnx");
                let stem = name.strip_suffix(".onnx").unwrap_or(name);
                let (suffix, module, hint) = match precision {
                    Precision::Fp16 => ("fp16", "fp16", "`make setup GPU=1` builds the encoder's"),
                    _ => ("quantized", "quantize", "`make setup` builds both"),
                };
                Err(Error::VariantMissing {
                    model: self.role,
                    precision,
                    file: dir.join(format!("{stem}.{suffix}.onnx")),
                    build: format!(
                        "PYTHONPATH=onnx .venv/bin/python -m e2llm_offline.{module} --models {} --parts {}",
                        dir.display(),
                        self.role
                    ),
                    dir,
                    hint,
                })
            }
        }
    }
}

/// The execution provider a session actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Provider {
    #[serde(rename = "CPUExecutionProvider")]
    Cpu,
    #[serde(rename = "CUDAExecutionProvider")]
    Cuda,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "CPUExecutionProvider",
            Provider::Cuda => "CUDAExecutionProvider",
        })
    }
}

static ENVIRONMENT: OnceLock<std::result::Result<(Environment, PathBuf), String>> = OnceLock::new();

/// Candidate locations of `libonnxruntime.so`, in order: `ORT_DYLIB_PATH`, the `runtime/` folder
/// that `make setup` fills beside the models directory, and inside the models directory itself.
pub fn library_candidates(models_dir: &Path) -> Vec<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(path) = std::env::var_os("ORT_DYLIB_PATH") {
        candidates.push(PathBuf::from(path));
    }
    for dir in [models_dir.parent().map(|p| p.join("runtime")), Some(models_dir.to_path_buf())].into_iter().flatten() {
        if let Ok(entries) = std::fs::read_dir(&dir) {
            let mut libs: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("libonnxruntime.so")))
                .collect();
            libs.sort();
            candidates.extend(libs);
        }
    }
    candidates
}

/// Loads ONNX Runtime once per process (later calls return the same environment).
pub fn environment(models_dir: &Path) -> Result<(Environment, PathBuf)> {
    ENVIRONMENT
        .get_or_init(|| {
            // A path the user set explicitly is used or refused, never skipped for another library:
            // a typo there must not silently load a different build (CPU for GPU, another version).
            if let Some(path) = std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from) {
                if !path.is_file() {
                    return Err(format!("ORT_DYLIB_PATH is {}, which is not a file", path.display()));
                }
            }
            let candidates = library_candidates(models_dir);
            let Some(path) = candidates.iter().find(|p| p.is_file()).cloned() else {
                return Err(format!(
                    "looked for {}",
                    if candidates.is_empty() {
                        format!("ORT_DYLIB_PATH and {}/../runtime/", models_dir.display())
                    } else {
                        candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
                    }
                ));
            };
            let builder = ort::init_from(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            let env = builder.with_name("e2llm").build().map_err(|e| format!("{}: {e}", path.display()))?;
            Ok((env, path))
        })
        .clone()
        .map_err(|reason| Error::Runtime { reason })
}

/// Builds a float32 session for `model` on `device` with `threads` intra-op threads.
pub fn session(models_dir: &Path, model: &Path, device: Device, threads: usize) -> Result<(Session, Provider)> {
    let files = ModelFiles::single("model", model.to_path_buf());
    let (session, provider, _) = model_session(models_dir, &files, device, Precision::Fp32, threads)?;
    Ok((session, provider))
}

/// Builds a session for one of `files` on `device`: the precision is chosen for the provider that
/// runs it (under `Device::Auto`, CUDA's choice, or the CPU's after falling back).
pub fn model_session(
    models_dir: &Path,
    files: &ModelFiles,
    device: Device,
    precision: Precision,
    threads: usize,
) -> Result<(Session, Provider, Precision)> {
    let (env, _) = environment(models_dir)?;
    let build = |provider: Provider| -> Result<(Session, Provider, Precision)> {
        let (model, chosen) = files.choose(precision, provider)?;
        let label = model.display().to_string();
        if !model.is_file() {
            return Err(Error::model_file(model, "file not found"));
        }
        // The builder's own errors hold the builder (not Send): `ort::Error::<()>::from` keeps the error alone.
        let mut builder = Session::builder(&env)
            .map_err(|e| Error::inference(&label, e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| Error::inference(&label, ort::Error::<()>::from(e)))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| Error::inference(&label, ort::Error::<()>::from(e)))?;
        if provider == Provider::Cuda {
            builder = builder.with_execution_providers([ort::ep::CUDA::default().build().error_on_failure()]).map_err(
                |e| Error::Cuda {
                    reason: format!(
                        "{e}. CUDA needs an NVIDIA GPU with its driver (libcuda.so.1), the CUDA 13 libraries and \
                         the GPU build of ONNX Runtime (`make setup GPU=1` installs the last two); or use --device cpu"
                    ),
                },
            )?;
        }
        let session = builder.commit_from_file(model).map_err(|e| Error::model_file(model, e))?;
        Ok((session, provider, chosen))
    };
    match device {
        Device::Cpu => build(Provider::Cpu),
        Device::Cuda => build(Provider::Cuda),
        Device::Auto => match build(Provider::Cuda) {
            Err(Error::Cuda { .. }) => build(Provider::Cpu),
            other => other,
        },
    }
}

/// Number of CPU cores available to this process.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_and_precision_names_come_from_one_list() {
        use clap::ValueEnum;
        for device in Device::value_variants() {
            let name = crate::error::value_name(device);
            assert_eq!(Device::parse(&name).unwrap(), *device);
            assert_eq!(serde_json::to_value(device).unwrap(), serde_json::json!(name));
        }
        for precision in Precision::value_variants() {
            assert_eq!(Precision::parse(&precision.to_string()).unwrap(), *precision);
        }
        assert_eq!(Device::parse(" GPU ").unwrap(), Device::Cuda);
        assert_eq!(Device::parse("").unwrap(), Device::Cpu);
        assert_eq!(Precision::parse("float16").unwrap(), Precision::Fp16);
        assert_eq!(Precision::parse("").unwrap(), Precision::Auto);
        let err = Device::parse("tpu").unwrap_err().to_string();
        assert!(err.contains("unknown device `tpu`") && err.contains("cpu, cuda, auto"), "{err}");
    }
}
