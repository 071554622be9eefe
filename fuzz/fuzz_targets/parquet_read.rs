//! Any bytes as a Parquet file given to `e2llm import`: `export::read` returns an error or documents.
//! It catches the panics of the parquet and arrow-ipc readers and names the file, so those are
//! silenced here; what is left to find is a panic that escapes, an abort, a hang or unbounded memory.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    static SILENCE_CAUGHT_PANICS: std::sync::Once = std::sync::Once::new();
    SILENCE_CAUGHT_PANICS.call_once(|| std::panic::set_hook(Box::new(|_| {})));
    let path = std::env::temp_dir().join(format!("e2llm-fuzz-{}.parquet", std::process::id()));
    std::fs::write(&path, data).expect("the temporary directory is writable");
    let _ = e2llm::export::read(&path);
});
