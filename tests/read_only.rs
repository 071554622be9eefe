//! A database file this process may not write: `ask` answers from it, `compress` refuses it with an
//! error naming the file and changes nothing. Root ignores file modes, so when the tests run as root
//! (the test machines and CI do) the e2llm child runs as the user nobody.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const NOBODY: u32 = 65534;

fn running_as_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// Whether the user nobody can read `path` (every parent traversable, the file readable).
fn nobody_can_read(path: &Path) -> bool {
    Command::new("setpriv")
        .args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".into()])
        .arg("test")
        .arg("-r")
        .arg(path)
        .status()
        .is_ok_and(|s| s.success())
}

/// `file` as the user nobody can read it. Usually its own path (a checkout under /work or /home).
/// A checkout under a directory nobody cannot enter (/root is 0700) gets a hard link in `stage`: the
/// same inode with the same mode, reached through the test's own traversable directory, so nothing
/// outside the temporary directory changes and no 500 MB model is copied. A copy (mode 0755) is the
/// last resort, for another file system or a file that others may not read.
fn readable_by_nobody(file: &Path, stage: &Path) -> PathBuf {
    if nobody_can_read(file) {
        return file.to_path_buf();
    }
    let file = std::fs::canonicalize(file).unwrap();
    let staged = stage.join(file.file_name().unwrap());
    if std::fs::hard_link(&file, &staged).is_err() || !nobody_can_read(&staged) {
        let _ = std::fs::remove_file(&staged);
        std::fs::copy(&file, &staged).unwrap();
        chmod(&staged, 0o755);
    }
    assert!(nobody_can_read(&staged), "{} is not readable by nobody even staged", staged.display());
    staged
}

/// The binary, models and ONNX Runtime library, as the child process will reach them.
struct Setup {
    bin: PathBuf,
    models: PathBuf,
    runtime: PathBuf,
}

impl Setup {
    fn new(stage: &Path) -> Setup {
        let models = common::models_dir();
        let runtime = common::ort_library();
        if !running_as_root() {
            return Setup { bin: common::bin().into(), models, runtime };
        }
        std::fs::create_dir_all(stage.join("models")).unwrap();
        let staged_models = if nobody_can_read(&models.join("manifest.json")) {
            models
        } else {
            for entry in std::fs::read_dir(&models).unwrap() {
                readable_by_nobody(&entry.unwrap().path(), &stage.join("models"));
            }
            stage.join("models")
        };
        Setup {
            bin: readable_by_nobody(Path::new(common::bin()), stage),
            models: staged_models,
            runtime: readable_by_nobody(&runtime, stage),
        }
    }

    /// Runs e2llm in `dir`: as nobody when this process is root (see the file comment), else as is.
    fn e2llm(&self, dir: &Path, args: &[&str]) -> Output {
        let mut command = if running_as_root() {
            let mut command = Command::new("setpriv");
            command.args([format!("--reuid={NOBODY}"), format!("--regid={NOBODY}"), "--clear-groups".into()]);
            command.arg(&self.bin);
            command
        } else {
            Command::new(&self.bin)
        };
        command
            .args(args)
            .current_dir(dir)
            .env("E2LLM_MODELS", &self.models)
            .env("ORT_DYLIB_PATH", &self.runtime)
            .output()
            .unwrap()
    }
}

/// Every name in `dir` with its bytes: what "changes nothing" compares.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// A WAL-mode database with one document in `dir/data/ro.db`, written by this (privileged) process.
fn database(root: &Path) -> PathBuf {
    let data = root.join("data");
    std::fs::create_dir(&data).unwrap();
    std::fs::write(
        data.join("harbour.txt"),
        "The harbour of Kestrel Bay opened in 1887. Its lighthouse keeper was Ada Morrow.",
    )
    .unwrap();
    let out = Command::new(common::bin())
        .args(["compress", "--db", "ro.db", "harbour.txt"])
        .current_dir(&data)
        .env("E2LLM_MODELS", common::models_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let db = data.join("ro.db");
    // The case that needs care: WAL mode (header bytes 18-19 are 2), and no -wal/-shm left beside it.
    assert_eq!(&std::fs::read(&db).unwrap()[18..20], &[2, 2], "the database is not in WAL mode");
    assert!(!data.join("ro.db-wal").exists() && !data.join("ro.db-shm").exists());
    db
}

#[test]
fn ask_works_and_compress_is_refused_on_a_read_only_database() {
    let root = tempfile::tempdir().unwrap();
    chmod(root.path(), 0o755);
    let setup = Setup::new(&root.path().join("stage"));
    let db = database(root.path());
    let data = db.parent().unwrap();
    // Readable and traversable by everyone, writable by no one but root: SQLite can create no -shm here.
    chmod(data, 0o555);
    chmod(&db, 0o444);
    let before = contents(data);

    let ask = setup.e2llm(
        data,
        &[
            "ask",
            "--db",
            "ro.db",
            "--doc",
            "harbour.txt",
            "--json",
            "--max-new-tokens",
            "16",
            "Who kept the lighthouse?",
        ],
    );
    let stderr = String::from_utf8_lossy(&ask.stderr);
    assert!(ask.status.success(), "ask on a read-only database failed: {stderr}");
    let answer: serde_json::Value = serde_json::from_slice(&ask.stdout).unwrap();
    assert_eq!(answer["chunks"], serde_json::json!([0]), "the document's chunk was not read: {answer}");
    assert!(answer["answer"].as_str().unwrap().contains("Ada"), "{answer}");

    std::fs::write(root.path().join("new.txt"), "A second document.").unwrap();
    let new_doc = root.path().join("new.txt");
    let compress = setup.e2llm(data, &["compress", "--db", "ro.db", new_doc.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&compress.stderr);
    assert!(!compress.status.success(), "compress wrote a read-only database");
    assert!(stderr.contains("database ro.db is read-only"), "unclear error: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(contents(data), before, "the refused compress changed the directory");

    // The temporary directory is removed by this (non-root, when not root) user afterwards.
    chmod(data, 0o755);
}

/// Root ignores file modes: for root a mode-0444 file in a mode-0555 directory is writable, as it is for
/// SQLite and every other program. e2llm asks the kernel (access(2)) rather than reading mode bits, so
/// it agrees: root's `compress` writes, and the read-only refusal is for users the kernel refuses.
#[test]
fn root_may_write_a_mode_0444_database() {
    if !running_as_root() {
        return;
    }
    let root = tempfile::tempdir().unwrap();
    let db = database(root.path());
    let data = db.parent().unwrap();
    chmod(data, 0o555);
    chmod(&db, 0o444);
    std::fs::write(root.path().join("new.txt"), "A second document, about the pier.").unwrap();
    let out = Command::new(common::bin())
        .args(["compress", "--db", db.to_str().unwrap(), root.path().join("new.txt").to_str().unwrap()])
        .env("E2LLM_MODELS", common::models_dir())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let store = e2llm::store::Store::open_read_only(&db).unwrap();
    assert_eq!(store.reader().doc_ids().unwrap().len(), 2);
    chmod(data, 0o755);
}
