//! Entry point of the loadable SQLite extension. `.load path/to/libe2llm` in the sqlite3 shell,
//! `conn.load_extension("path/to/libe2llm")` in Python. The functions live in `e2llm::sql`.

use std::os::raw::{c_char, c_int};

use rusqlite::{ffi, Connection};

/// The generic entry point SQLite tries first, whatever the file is named.
///
/// # Safety
/// Called by SQLite with valid pointers while loading the extension.
#[no_mangle]
pub unsafe extern "C" fn sqlite3_extension_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    Connection::extension_init2(db, pz_err_msg, p_api, init)
}

/// The entry point named after the extension (`.load libe2llm sqlite3_e2llm_init`).
///
/// # Safety
/// As for [`sqlite3_extension_init`].
#[no_mangle]
pub unsafe extern "C" fn sqlite3_e2llm_init(
    db: *mut ffi::sqlite3,
    pz_err_msg: *mut *mut c_char,
    p_api: *mut ffi::sqlite3_api_routines,
) -> c_int {
    Connection::extension_init2(db, pz_err_msg, p_api, init)
}

fn init(db: Connection) -> rusqlite::Result<bool> {
    e2llm::sql::register(&db)?;
    Ok(false)
}
