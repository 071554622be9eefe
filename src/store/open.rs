//! The open policy: who may write a database (file and directory permissions, the `-wal`/`-shm`
//! siblings), and the `immutable=1` read-only open of a WAL database whose WAL index cannot be created.

use std::path::Path;

use rusqlite::{Connection, OpenFlags};

use crate::error::{Error, Result};

/// Whether this process may write `path`, asked of the kernel with the effective ids, so that root,
/// ACLs and read-only mounts count as they will when SQLite opens the file.
fn writable(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else { return false };
    // SAFETY: `c_path` is a NUL-terminated string that outlives the call; faccessat only reads it.
    unsafe { libc::faccessat(libc::AT_FDCWD, c_path.as_ptr(), libc::W_OK, libc::AT_EACCESS) == 0 }
}

fn directory_of(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// `path` with `suffix` appended to its file name (`t.db` -> `t.db-wal`).
fn sibling(path: &Path, suffix: &str) -> std::path::PathBuf {
    let mut name = path.as_os_str().to_os_string();
    name.push(suffix);
    name.into()
}

/// Why this process cannot write the database at `path`, if it cannot. A writer needs the file and
/// its directory: WAL mode creates `-wal` and `-shm` files beside the database.
pub(super) fn check_writable(path: &Path) -> std::result::Result<(), String> {
    let dir = directory_of(path);
    if path.exists() && !writable(path) {
        return Err("this user may not write the file".into());
    }
    let logs_writable = [sibling(path, "-wal"), sibling(path, "-shm")].iter().all(|p| p.exists() && writable(p));
    if dir.is_dir() && !writable(dir) && !logs_writable {
        return Err(format!("this user may not create files in its directory {}", dir.display()));
    }
    Ok(())
}

/// A read that failed because SQLite could not create or open the WAL index (`-shm`): a WAL-mode
/// database in a directory this process cannot write.
pub(super) fn needs_wal_index(e: &rusqlite::Error) -> bool {
    matches!(e, rusqlite::Error::SqliteFailure(failure, _)
        if matches!(failure.code, rusqlite::ErrorCode::ReadOnly | rusqlite::ErrorCode::CannotOpen))
}

/// Opens a WAL-mode database that nobody writes with `immutable=1`, after a read-only open failed
/// (`first_error`) because SQLite could not create its `-shm` file.
///
/// `immutable=1` tells SQLite the file cannot change while it is open: it takes no locks and reads
/// no WAL. That is only true when no one writes the file, so it is used only when:
/// - there is no `-wal` and no `-shm` beside the file. A WAL-mode connection keeps both while it is
///   open, and SQLite deletes them when the last connection closes cleanly, so no writer has the
///   database open now and no committed transaction waits in a log that we would skip (a writer
///   that crashed leaves them: then we refuse, as skipping its log could show an older or torn state);
/// - this process may write neither the file nor its directory, so no writer of ours can exist.
///
/// What it cannot rule out: another user allowed to write them (the owner, root) starting a write
/// while we read. This connection would not see that write, and a checkpoint rewriting pages during
/// a query could make it fail with "malformed" or read a stale page; it never writes. A database
/// made read-only is one its owner does not mean to change, so the read is of a snapshot at rest.
pub(super) fn open_immutable(path: &Path, label: &str, first_error: rusqlite::Error) -> Result<Connection> {
    let dir = directory_of(path);
    let shown_dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let logs: Vec<_> = [sibling(path, "-wal"), sibling(path, "-shm")].into_iter().filter(|p| p.exists()).collect();
    if !logs.is_empty() {
        return Err(Error::db(
            label,
            format!(
                "cannot read it: it has a write-ahead log ({}) that this user cannot open in {}, a directory it may \
                 not write (SQLite: {first_error}); open the database once as a user who can write there (e.g. \
                 `e2llm info --db FILE`) to fold the log back into the file",
                logs.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
                shown_dir.display()
            ),
        ));
    }
    if writable(path) || writable(dir) {
        return Err(Error::db(
            label,
            format!(
                "cannot read it: SQLite must create its -shm file (WAL mode) in {}, which this user may not write \
                 (SQLite: {first_error}); make the directory writable for this user",
                shown_dir.display()
            ),
        ));
    }
    let uri = immutable_uri(path).map_err(|e| Error::io(format!("resolving {label}"), e))?;
    let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
    Connection::open_with_flags(&uri, flags).map_err(|e| Error::db(label, e))
}

/// `file:/absolute/path?immutable=1`, the path percent-encoded (URI filenames give `?`, `#` and `%`
/// meaning).
fn immutable_uri(path: &Path) -> std::io::Result<String> {
    use std::os::unix::ffi::OsStrExt;
    let absolute = std::fs::canonicalize(path)?;
    let mut uri = String::from("file:");
    for &byte in absolute.as_os_str().as_bytes() {
        if byte.is_ascii_alphanumeric() || b"/-._~".contains(&byte) {
            uri.push(byte as char);
        } else {
            uri.push_str(&format!("%{byte:02X}"));
        }
    }
    uri.push_str("?immutable=1");
    Ok(uri)
}

#[cfg(test)]
mod tests {
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::fs::PermissionsExt;
    use std::path::{Path, PathBuf};

    use rusqlite::{ffi, Connection, OpenFlags};

    use super::*;

    fn failure(code: std::ffi::c_int) -> rusqlite::Error {
        rusqlite::Error::SqliteFailure(ffi::Error::new(code), None)
    }

    /// A temporary directory whose canonical path needs no percent-encoding, so that a URI can be
    /// written out by hand.
    fn plain_tempdir() -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let canonical = std::fs::canonicalize(dir.path()).unwrap().to_str().unwrap().to_string();
        assert!(
            canonical.bytes().all(|b| b.is_ascii_alphanumeric() || b"/-._~".contains(&b)),
            "temporary directory {canonical} needs encoding itself"
        );
        (dir, canonical)
    }

    #[test]
    fn sibling_appends_the_suffix_to_the_whole_name() {
        for (path, suffix, expected) in [
            ("t.db", "-wal", "t.db-wal"),
            ("t.tar.gz", "-shm", "t.tar.gz-shm"),
            ("no_extension", "-wal", "no_extension-wal"),
            ("../relative/dir/t.db", "-wal", "../relative/dir/t.db-wal"),
            ("/abs path/with space.db", "-shm", "/abs path/with space.db-shm"),
            ("q?/h#/p%20/a?b#c%41.db", "-wal", "q?/h#/p%20/a?b#c%41.db-wal"),
        ] {
            assert_eq!(sibling(Path::new(path), suffix), PathBuf::from(expected), "{path}");
        }
        // Not UTF-8: the bytes are kept as they are.
        let name = Path::new(OsStr::from_bytes(b"d\xffb"));
        assert_eq!(sibling(name, "-wal").as_os_str().as_bytes(), b"d\xffb-wal");
    }

    #[test]
    fn directory_of_a_bare_name_is_the_current_directory() {
        for (path, expected) in [
            ("t.db", "."),
            ("", "."),
            ("./t.db", "."),
            ("../t.db", ".."),
            ("/t.db", "/"),
            ("/srv/data/t.db", "/srv/data"),
            ("rel dir/sub/t.db", "rel dir/sub"),
            ("a?b/c#d/e%f/t.db", "a?b/c#d/e%f"),
        ] {
            assert_eq!(directory_of(Path::new(path)), Path::new(expected), "{path:?}");
        }
    }

    #[test]
    fn writable_answers_for_existing_paths_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        std::fs::write(&file, b"").unwrap();
        assert!(writable(dir.path()));
        assert!(writable(&file));
        assert!(!writable(&dir.path().join("missing.db")));
        // A NUL byte cannot reach the kernel: not writable rather than a panic.
        assert!(!writable(Path::new(OsStr::from_bytes(b"t\0.db"))));
    }

    #[test]
    fn check_writable_lets_a_writer_create_or_reopen_a_database() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        assert_eq!(check_writable(&file), Ok(()), "new file in a writable directory");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(check_writable(&file), Ok(()), "existing file");
        // A directory that does not exist is left to SQLite, which names the real error.
        assert_eq!(check_writable(&dir.path().join("missing/t.db")), Ok(()));
    }

    #[test]
    fn only_read_only_and_cannot_open_need_the_wal_index() {
        assert!(needs_wal_index(&failure(ffi::SQLITE_READONLY)));
        assert!(needs_wal_index(&failure(ffi::SQLITE_READONLY_CANTINIT)));
        assert!(needs_wal_index(&failure(ffi::SQLITE_CANTOPEN)));
        for other in [ffi::SQLITE_NOTADB, ffi::SQLITE_CORRUPT, ffi::SQLITE_BUSY, ffi::SQLITE_IOERR] {
            assert!(!needs_wal_index(&failure(other)), "code {other}");
        }
        assert!(!needs_wal_index(&rusqlite::Error::QueryReturnedNoRows));
    }

    #[test]
    fn immutable_uri_percent_encodes_what_uri_filenames_give_meaning() {
        let (dir, canonical) = plain_tempdir();
        let file = dir.path().join("a b?c#d%e+f&g=h.db");
        std::fs::write(&file, b"").unwrap();
        assert_eq!(
            immutable_uri(&file).unwrap(),
            format!("file:{canonical}/a%20b%3Fc%23d%25e%2Bf%26g%3Dh.db?immutable=1")
        );
        let odd = dir.path().join(OsStr::from_bytes(b"x\xff\xc3\xa9~-_.db"));
        std::fs::write(&odd, b"").unwrap();
        assert_eq!(immutable_uri(&odd).unwrap(), format!("file:{canonical}/x%FF%C3%A9~-_.db?immutable=1"));
    }

    #[test]
    fn immutable_uri_is_absolute_and_resolved() {
        let (dir, canonical) = plain_tempdir();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("t.db"), b"").unwrap();
        let expected = format!("file:{canonical}/t.db?immutable=1");
        assert_eq!(immutable_uri(&dir.path().join("sub/../t.db")).unwrap(), expected);
        assert_eq!(immutable_uri(&dir.path().join("./sub/./../t.db")).unwrap(), expected);
        std::os::unix::fs::symlink(dir.path().join("t.db"), dir.path().join("link.db")).unwrap();
        assert_eq!(immutable_uri(&dir.path().join("link.db")).unwrap(), expected);
        // Relative to the working directory: up to / and down again.
        let cwd = std::env::current_dir().unwrap();
        let relative: PathBuf =
            std::iter::repeat_n("..", cwd.components().count() - 1).chain([&canonical[1..], "t.db"]).collect();
        assert!(relative.is_relative());
        assert_eq!(immutable_uri(&relative).unwrap(), expected);
    }

    #[test]
    fn immutable_uri_of_a_missing_file_is_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let err = immutable_uri(&dir.path().join("missing.db")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    /// SQLite itself reads the URI back to the file named: a `?` or `#` left unencoded would cut the
    /// name short and open `a` (here a decoy database) or nothing.
    #[test]
    fn sqlite_opens_the_file_an_immutable_uri_names() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &[u8], value: &str| {
            let conn = Connection::open(dir.path().join(OsStr::from_bytes(name))).unwrap();
            conn.execute_batch("CREATE TABLE t (v TEXT)").unwrap();
            conn.execute("INSERT INTO t VALUES (?1)", [value]).unwrap();
        };
        write(b"a", "decoy");
        for name in [&b"a?b #1%41.db"[..], b"a#frag", b"a%3Fb", b"a \xff.db"] {
            write(name, "right");
            let uri = immutable_uri(&dir.path().join(OsStr::from_bytes(name))).unwrap();
            let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
            let conn = Connection::open_with_flags(&uri, flags).unwrap();
            let value: String = conn.query_row("SELECT v FROM t", [], |r| r.get(0)).unwrap();
            assert_eq!(value, "right", "{uri}");
        }
    }

    /// A `-wal` or `-shm` beside the file may hold commits that `immutable=1` would skip: refused,
    /// naming the log, whatever the permissions.
    #[test]
    fn open_immutable_refuses_a_database_with_a_log_beside_it() {
        for log in ["-wal", "-shm"] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("t.db");
            Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (v)").unwrap();
            std::fs::write(sibling(&path, log), b"").unwrap();
            let err = open_immutable(&path, "LABEL", failure(ffi::SQLITE_CANTOPEN)).unwrap_err();
            assert!(matches!(err, Error::Database { ref path, .. } if path == "LABEL"), "{err}");
            let message = err.to_string();
            assert!(message.contains("has a write-ahead log"), "{message}");
            assert!(message.contains(&format!("t.db{log}")), "{message}");
            let first = failure(ffi::SQLITE_CANTOPEN).to_string();
            assert!(message.contains(&first), "keeps SQLite's error `{first}`: {message}");
        }
    }

    /// Without logs, a user who may write the file or its directory could be a writer: refused, with
    /// what to do.
    #[test]
    fn open_immutable_refuses_when_this_user_may_write() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.db");
        Connection::open(&path).unwrap().execute_batch("CREATE TABLE t (v)").unwrap();
        let err = open_immutable(&path, "LABEL", failure(ffi::SQLITE_READONLY)).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("make the directory writable"), "{message}");
        let canonical = std::fs::canonicalize(dir.path()).unwrap();
        assert!(message.contains(&canonical.display().to_string()), "names the directory: {message}");
        // A read-only file in a directory this user may write: still a possible writer.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
        let message = open_immutable(&path, "LABEL", failure(ffi::SQLITE_READONLY)).unwrap_err().to_string();
        assert!(message.contains("make the directory writable"), "{message}");
    }

    /// A file this user may not write is refused up front. Root may write any file, so as root the
    /// answer is Ok (tests/read_only.rs runs the refusals as `nobody`).
    #[test]
    fn check_writable_refuses_a_file_this_user_may_not_write() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("t.db");
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o444)).unwrap();
        // SAFETY: geteuid has no preconditions and cannot fail.
        let root = unsafe { libc::geteuid() } == 0;
        let expected = if root { Ok(()) } else { Err("this user may not write the file".to_string()) };
        assert_eq!(check_writable(&file), expected);
        assert_eq!(writable(&file), root);
    }
}
