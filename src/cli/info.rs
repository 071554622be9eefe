//! `e2llm info` (models, runtime, precision, a database's contents) and `e2llm embed` (vectors as JSON).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use e2llm::runtime;
use e2llm::store::Store;
use e2llm::Result;

use super::shared::{print_json, ModelArgs};

#[derive(Args)]
pub struct InfoArgs {
    #[arg(long)]
    db: Option<PathBuf>,
    /// List document ids.
    #[arg(long)]
    docs: bool,
    /// Check every model file's sha256 against the manifest.
    #[arg(long)]
    verify: bool,
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    models: ModelArgs,
}

pub fn info(args: InfoArgs) -> Result<ExitCode> {
    let engine = args.models.engine()?;
    let manifest = engine.manifest();
    if args.verify {
        manifest.verify()?;
    }
    let (_, library) = runtime::environment(&manifest.dir)?;
    // The provider actually used (for `--device auto`): the encoder is the cheapest model to load.
    let provider = engine.encoder()?.provider();
    let (encoder_precision, decoder_precision) = engine.precisions(provider)?;
    let store = args.db.as_ref().map(|path| Store::open_read_only(path)).transpose()?;
    let stats = store.as_ref().map(|s| s.reader().stats()).transpose()?;
    let doc_ids = match (&store, args.docs) {
        (Some(store), true) => Some(store.reader().doc_ids()?),
        _ => None,
    };
    let info = serde_json::json!({
        "version": e2llm::VERSION,
        "models_dir": manifest.dir,
        "onnxruntime": library,
        "device": engine.options().device,
        "provider": provider,
        "precision": {"requested": engine.requested_precision(), "encoder": encoder_precision, "decoder": decoder_precision},
        "encoder": {"source": manifest.encoder.source, "dim": manifest.encoder.dim, "fingerprint": manifest.encoder.fingerprint},
        "decoder": {"source": manifest.decoder.source, "hidden": manifest.decoder.hidden, "layers": manifest.decoder.layers,
                    "context_length": manifest.decoder.context_length, "fingerprint": manifest.decoder.fingerprint},
        "adapter": manifest.adapter,
        "rcc": manifest.rcc.as_ref().map(|r| serde_json::json!({"source": r.source, "ratio": r.ratio, "fingerprint": r.fingerprint})),
        "files": manifest.files,
        "verified": args.verify,
        "database": stats,
        "documents": doc_ids,
    });
    if args.json {
        print_json(&info);
    } else {
        println!("e2llm {}", e2llm::VERSION);
        println!("models      {}", manifest.dir.display());
        println!("runtime     {}", library.display());
        println!("provider    {provider} (--device {})", format!("{:?}", engine.options().device).to_lowercase());
        println!(
            "precision   encoder {encoder_precision}, decoder {decoder_precision} (--precision {})",
            engine.requested_precision()
        );
        println!(
            "encoder     {} (dim {}, fingerprint {})",
            manifest.encoder.source,
            manifest.encoder.dim,
            &manifest.encoder.fingerprint[..16.min(manifest.encoder.fingerprint.len())]
        );
        println!(
            "decoder     {} (hidden {}, {} layers, context {}, fingerprint {})",
            manifest.decoder.source,
            manifest.decoder.hidden,
            manifest.decoder.layers,
            manifest.decoder.context_length,
            &manifest.decoder.fingerprint[..16.min(manifest.decoder.fingerprint.len())]
        );
        match &manifest.adapter {
            Some(adapter) => {
                println!("adapter     {} ({} -> {})", adapter.source, adapter.encoder_dim, adapter.hidden)
            }
            None => println!("adapter     none (compressed and hybrid modes unavailable)"),
        }
        match &manifest.rcc {
            Some(rcc) => println!("rcc         {} (1 memory slot per {} tokens)", rcc.source, rcc.ratio),
            None => println!("rcc         none (compress --rcc and mode rcc unavailable)"),
        }
        if args.verify {
            println!("files       {} verified (sha256)", manifest.files.len());
        }
        if let Some(stats) = stats {
            println!(
                "database    {} documents, {} chunks, {} text bytes, {} vector bytes, {} RCC memory bytes, {} file bytes",
                stats.documents, stats.chunks, stats.text_bytes, stats.vector_bytes, stats.memory_bytes, stats.file_bytes
            );
        }
        for id in doc_ids.unwrap_or_default() {
            println!("  {id}");
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct EmbedArgs {
    #[arg(required = true)]
    texts: Vec<String>,
    #[command(flatten)]
    models: ModelArgs,
}

pub fn embed(args: EmbedArgs) -> Result<ExitCode> {
    let encoder = args.models.engine()?.encoder()?;
    let refs: Vec<&str> = args.texts.iter().map(String::as_str).collect();
    let vectors = encoder.embed(&refs, e2llm::encode::DEFAULT_BATCH_SIZE)?;
    for i in 0..vectors.len() {
        println!("{}", serde_json::to_string(vectors.row(i)).expect("floats serialise"));
    }
    Ok(ExitCode::SUCCESS)
}
