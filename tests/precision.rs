//! `--precision fp32|fp16|quantized|auto`: which graph runs, the error when a variant is missing,
//! float16 encoder vectors against float32 ones on the CPU provider (where ONNX Runtime runs the
//! float16 nodes it lacks CPU kernels for in float32: this checks the variant, not GPU arithmetic), and
//! the quantised variants (what `auto` runs on the CPU) against float32.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use e2llm::decode::{GenerateOptions, Piece};
use e2llm::engine::{Engine, EngineOptions};
use e2llm::runtime::{Precision, Provider};
use e2llm::vector::dot;
use e2llm::Error;

#[test]
fn auto_runs_fp16_under_cuda_and_quantized_on_cpu_when_the_variants_exist() {
    use Precision::{Auto, Fp16, Fp32, Quantized};
    use Provider::{Cpu, Cuda};
    for (requested, provider, fp16, quantized, chosen) in [
        (Auto, Cuda, true, true, Some(Fp16)),
        (Auto, Cuda, false, true, Some(Fp32)), // the quantised graphs are CPU graphs
        (Auto, Cpu, true, true, Some(Quantized)),
        (Auto, Cpu, true, false, Some(Fp32)),
        (Auto, Cpu, false, false, Some(Fp32)),
        (Fp32, Cuda, true, true, Some(Fp32)),
        (Fp32, Cpu, false, false, Some(Fp32)),
        (Fp16, Cuda, true, false, Some(Fp16)),
        (Fp16, Cpu, true, true, Some(Fp16)), // asked for explicitly: allowed on CPU
        (Fp16, Cuda, false, true, None),
        (Quantized, Cpu, false, true, Some(Quantized)),
        (Quantized, Cuda, false, true, Some(Quantized)), // explicit: ONNX Runtime places what CUDA lacks on the CPU
        (Quantized, Cpu, true, false, None),
    ] {
        let has = |p: Precision| match p {
            Fp16 => fp16,
            Quantized => quantized,
            _ => true,
        };
        assert_eq!(requested.resolve(provider, has), chosen, "{requested:?} on {provider:?}, {fp16} {quantized}");
    }
    assert_eq!(Precision::parse(" FP16 ").unwrap(), Fp16);
    assert_eq!(Precision::parse("float32").unwrap(), Fp32);
    for alias in ["quantized", "quantised", "int8"] {
        assert_eq!(Precision::parse(alias).unwrap(), Quantized);
    }
    assert_eq!(Precision::parse("").unwrap(), Auto);
    assert!(Precision::parse("bf16").unwrap_err().to_string().contains("fp32, fp16, quantized, auto"));
}

/// A models directory of links to the default models' files, with its own manifest.json from which
/// the float16 and quantised variants (if the export wrote them) are removed; `runtime/` beside it links to
/// the default one (where e2llm looks for ONNX Runtime without ORT_DYLIB_PATH).
struct Models {
    root: tempfile::TempDir,
}

impl Models {
    fn path(&self) -> PathBuf {
        self.root.path().join("default")
    }
}

fn models_without_variants() -> Models {
    let source = common::models_dir();
    let root = tempfile::tempdir().unwrap();
    let dir = Models { root };
    std::fs::create_dir(dir.path()).unwrap();
    if let Some(runtime) = source.parent().map(|p| p.join("runtime")).filter(|p| p.is_dir()) {
        std::os::unix::fs::symlink(runtime, dir.root.path().join("runtime")).unwrap();
    }
    let mut manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(source.join("manifest.json")).unwrap()).unwrap();
    for part in ["encoder", "decoder"] {
        for key in ["fp16_file", "quantized_file"] {
            if let Some(name) = manifest[part].as_object_mut().unwrap().remove(key) {
                manifest["files"].as_object_mut().unwrap().remove(name.as_str().unwrap());
            }
        }
    }
    for name in manifest["files"].as_object().unwrap().keys() {
        std::os::unix::fs::symlink(source.join(name), dir.path().join(name)).unwrap();
    }
    std::fs::write(dir.path().join("manifest.json"), serde_json::to_string_pretty(&manifest).unwrap()).unwrap();
    dir
}

fn engine(models: &Path, precision: Precision) -> Engine {
    let mut options = EngineOptions::new(models);
    options.precision = Some(precision);
    options.threads = 2;
    Engine::new(options).expect("engine loads")
}

fn e2llm(models: &Path, args: &[&str], precision_env: Option<&str>) -> std::process::Output {
    let mut command = Command::new(common::bin());
    command.args(args).env("E2LLM_MODELS", models).env_remove("E2LLM_PRECISION").env_remove("E2LLM_DEVICE");
    if let Some(value) = precision_env {
        command.env("E2LLM_PRECISION", value);
    }
    command.output().expect("e2llm runs")
}

#[test]
fn fp16_without_a_variant_names_the_file_and_how_to_build_it() {
    let models = models_without_variants();
    let err = engine(&models.path(), Precision::Fp16).encoder().err().expect("no fp16 encoder here");
    let message = err.to_string();
    assert!(matches!(err, Error::VariantMissing { model: "encoder", precision: Precision::Fp16, .. }), "{message}");
    assert!(message.contains(&models.path().join("encoder.fp16.onnx").display().to_string()), "{message}");
    assert!(
        message.contains("e2llm_offline.fp16 --models")
            && message.contains("--parts encoder")
            && message.contains("--precision fp32 or auto"),
        "{message}"
    );
    // The same from the command line, by flag and by environment; auto and fp32 run float32.
    for (args, env) in [(vec!["embed", "--precision", "fp16", "hello"], None), (vec!["embed", "hello"], Some("fp16"))] {
        let out = e2llm(&models.path(), &args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && !stderr.contains("decoder.fp16.onnx"), "{stderr}");
        assert!(stderr.contains("no fp16 variant of the encoder") && stderr.contains("encoder.fp16.onnx"), "{stderr}");
    }
    for precision in ["auto", "fp32"] {
        let out = e2llm(&models.path(), &["info", "--json", "--precision", precision], None);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(info["provider"], "CPUExecutionProvider");
        assert_eq!(info["precision"]["requested"], precision);
        assert_eq!(
            (info["precision"]["encoder"].as_str(), info["precision"]["decoder"].as_str()),
            (Some("fp32"), Some("fp32"))
        );
    }
}

/// `models_without_variants` plus the encoder's float16 variant, written by the export pipeline's CLI.
fn models_with_fp16_encoder() -> Models {
    let models = models_without_variants();
    let project = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let out = Command::new(project.join(".venv/bin/python"))
        .args(["-m", "e2llm_offline.fp16", "--models"])
        .arg(models.path())
        .args(["--parts", "encoder"])
        .env("PYTHONPATH", project.join("onnx"))
        .output()
        .expect("the project's venv (make setup) runs the fp16 export");
    assert!(out.status.success(), "fp16 export failed: {}", String::from_utf8_lossy(&out.stderr));
    models
}

#[test]
fn fp16_encoder_vectors_match_fp32_on_cpu() {
    let models = models_with_fp16_encoder();
    let fp32 = engine(&models.path(), Precision::Fp32).encoder().unwrap();
    let fp16 = engine(&models.path(), Precision::Fp16).encoder().unwrap();
    assert_eq!((fp32.precision(), fp16.precision()), (Precision::Fp32, Precision::Fp16));
    assert_eq!(fp16.provider(), Provider::Cpu);
    let golden = common::golden();
    let texts: Vec<&str> = golden["encoder"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    let (a, b) = (fp32.embed(&texts, 8).unwrap(), fp16.embed(&texts, 8).unwrap());
    let worst = (0..a.len()).map(|i| dot(a.row(i), b.row(i))).fold(1f32, f32::min);
    println!("fp16 vs fp32 encoder on CPU: smallest cosine {worst:.7} over {} texts", a.len());
    assert!(worst >= 0.999, "smallest cosine {worst}");

    // auto stays float32 on CPU; an explicit fp16 is reported by compress --json and info.
    assert_eq!(engine(&models.path(), Precision::Auto).encoder().unwrap().precision(), Precision::Fp32);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("fp16.db");
    let doc = common::examples_dir().join("1941-Roosevelt-1.txt");
    let out = e2llm(
        &models.path(),
        &["compress", "--db", db.to_str().unwrap(), doc.to_str().unwrap(), "--json", "--threads", "2"],
        Some("fp16"),
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (summary["precision"].as_str(), summary["provider"].as_str()),
        (Some("fp16"), Some("CPUExecutionProvider"))
    );
    // info resolves the decoder too: fp16 without its variant is refused, naming it.
    let out = e2llm(&models.path(), &["info", "--precision", "fp16"], None);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("decoder.fp16.onnx"), "{stderr}");
}

#[test]
fn engine_options_without_a_precision_read_e2llm_precision() {
    // How the SQL extension gets its precision (EngineOptions::new, then Engine::new).
    let models = models_without_variants();
    std::env::set_var("E2LLM_PRECISION", "fp32");
    let fp32 = Engine::new(EngineOptions::new(models.path())).map(|e| e.requested_precision());
    std::env::set_var("E2LLM_PRECISION", "bf16");
    let unknown = Engine::new(EngineOptions::new(models.path())).err().map(|e| e.to_string());
    std::env::remove_var("E2LLM_PRECISION");
    assert_eq!(fp32.unwrap(), Precision::Fp32);
    assert!(unknown.unwrap_or_default().contains("unknown precision `bf16`"));
    assert_eq!(Engine::new(EngineOptions::new(models.path())).unwrap().requested_precision(), Precision::Auto);
}

#[test]
fn quantized_variants_follow_fp32_and_auto_runs_them_on_cpu() {
    // `make setup` exports both quantised variants; auto picks them on the CPU.
    let models = common::models_dir();
    let auto = engine(&models, Precision::Auto);
    assert_eq!(auto.precisions(Provider::Cpu).unwrap(), (Precision::Quantized, Precision::Quantized));
    let fp32 = engine(&models, Precision::Fp32);
    let (encoder, reference) = (auto.encoder().unwrap(), fp32.encoder().unwrap());
    assert_eq!((encoder.precision(), reference.precision()), (Precision::Quantized, Precision::Fp32));

    // Encoder: each golden text alone (as a question is embedded) stays within the fingerprint's bar.
    let golden = common::golden();
    let texts: Vec<&str> = golden["encoder"].as_array().unwrap().iter().map(|c| c["text"].as_str().unwrap()).collect();
    let expected = reference.embed(&texts, 8).unwrap();
    let alone: Vec<Vec<f32>> = texts.iter().map(|text| encoder.embed(&[*text], 1).unwrap().data).collect();
    let worst = alone.iter().enumerate().map(|(i, v)| dot(v, expected.row(i))).fold(1f32, f32::min);
    println!("quantised vs fp32 encoder: smallest cosine {worst:.4} over {} texts", texts.len());
    assert!(worst >= 0.99, "smallest cosine {worst}");
    // Batched with texts of other lengths, a vector stays where it was alone: activations are quantised
    // per row, so only the kernel's row tiling moves it, slightly.
    let together = encoder.embed(&texts, 8).unwrap();
    let moved = alone.iter().enumerate().map(|(i, v)| dot(v, together.row(i))).fold(1f32, f32::min);
    assert!(moved >= 0.998, "a quantised vector moved to cosine {moved} in a batch");

    // Decoder: the golden prompts' greedy continuations start as float32's do, and it still knows Paris.
    let decoder = auto.decoder().unwrap();
    assert_eq!(decoder.precision(), Precision::Quantized);
    let cases = golden["decoder"].as_array().unwrap();
    let mut same_first = 0;
    for case in cases {
        let expected = case["greedy_ids"][0].as_u64().unwrap() as u32;
        let prompt = vec![Piece::Text(case["prompt"].as_str().unwrap().to_string())];
        let generation = decoder.generate(&prompt, &GenerateOptions::new(1)).unwrap();
        same_first += usize::from(generation.token_ids.first() == Some(&expected));
    }
    assert!(same_first * 4 >= cases.len() * 3, "first token as float32's for {same_first} of {} prompts", cases.len());
    let text = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";
    let answer = decoder.generate(&[Piece::Text(text.into())], &GenerateOptions::new(8)).unwrap();
    assert!(answer.text.contains("Paris"), "{:?}", answer.text);

    // The command line reports what ran.
    let out = e2llm(&models, &["info", "--json"], None);
    let info: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        (info["precision"]["encoder"].as_str(), info["precision"]["decoder"].as_str()),
        (Some("quantized"), Some("quantized"))
    );
}
