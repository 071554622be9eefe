//! ONNX Runtime: finding and loading the shared library once per process, choosing the execution
//! provider, and building sessions. Everything that touches `ort` setup lives here, so CPU/CUDA
//! differences stay in one place.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::error::{Error, Result};

/// Where inference runs. `Auto` tries CUDA and falls back to CPU, reporting which it used;
/// `Cuda` never falls back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Device {
    #[default]
    Cpu,
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

    pub fn parse(value: &str) -> Result<Device> {
        match value.trim().to_ascii_lowercase().as_str() {
            "cpu" | "" => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda),
            "auto" => Ok(Device::Auto),
            other => Err(Error::Invalid(format!("unknown device `{other}` (expected cpu, cuda or auto)"))),
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

/// Builds a session for `model` on `device` with `threads` intra-op threads.
pub fn session(models_dir: &Path, model: &Path, device: Device, threads: usize) -> Result<(Session, Provider)> {
    let (env, _) = environment(models_dir)?;
    let label = model.display().to_string();
    if !model.is_file() {
        return Err(Error::ModelFile { path: model.to_path_buf(), reason: "file not found".into() });
    }
    let build = |provider: Provider| -> Result<Session> {
        let mut builder = Session::builder(&env)
            .map_err(|e| Error::inference(&label, e))?
            .with_optimization_level(GraphOptimizationLevel::All)
            .map_err(|e| Error::inference(&label, e))?
            .with_intra_threads(threads.max(1))
            .map_err(|e| Error::inference(&label, e))?;
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
        builder
            .commit_from_file(model)
            .map_err(|e| Error::ModelFile { path: model.to_path_buf(), reason: e.to_string() })
    };
    match device {
        Device::Cpu => Ok((build(Provider::Cpu)?, Provider::Cpu)),
        Device::Cuda => Ok((build(Provider::Cuda)?, Provider::Cuda)),
        Device::Auto => match build(Provider::Cuda) {
            Ok(session) => Ok((session, Provider::Cuda)),
            Err(Error::Cuda { .. }) => Ok((build(Provider::Cpu)?, Provider::Cpu)),
            Err(other) => Err(other),
        },
    }
}

/// Number of CPU cores available to this process.
pub fn available_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}
