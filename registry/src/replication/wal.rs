//! Reading committed WAL frames of a database through libsql's WAL API
//! (`libsql_wal_frame_count`, `libsql_wal_get_frame`) on a dedicated raw connection.

use std::ffi::{CStr, CString, c_int, c_uint, c_void};
use std::path::Path;
use std::time::{Duration, Instant};

use libsql::ffi;

/// Bytes of a WAL frame header.
pub const FRAME_HEADER_BYTES: usize = 24;
/// Page size the libsql sync protocol assumes (SQLite's default).
pub const PAGE_BYTES: usize = 4096;
/// Bytes of one frame on the wire.
pub const FRAME_BYTES: usize = FRAME_HEADER_BYTES + PAGE_BYTES;

/// How long a reader retries while a writer holds the WAL write lock.
const BUSY_FOR: Duration = Duration::from_secs(5);

/// A WAL failure.
#[derive(Debug, thiserror::Error)]
#[error("WAL of {path}: {message}")]
pub struct WalError {
    path: String,
    message: String,
}

/// A raw connection that reads frames; never writes.
pub struct WalReader {
    db: *mut ffi::sqlite3,
    path: String,
}

// The handle is only used behind `&mut self` (callers wrap the reader in a mutex), and SQLite
// connections may move between threads (serialized threading mode is the default build).
unsafe impl Send for WalReader {}

impl WalReader {
    /// Opens `path` (which must already be a WAL-mode database).
    pub fn open(path: &Path) -> Result<Self, WalError> {
        let display = path.display().to_string();
        let c_path = CString::new(display.clone()).map_err(|_| WalError {
            path: display.clone(),
            message: "path contains NUL".into(),
        })?;
        let mut db = std::ptr::null_mut();
        let rc = unsafe {
            ffi::sqlite3_open_v2(
                c_path.as_ptr(),
                &mut db,
                ffi::SQLITE_OPEN_READWRITE as c_int,
                std::ptr::null(),
            )
        };
        let reader = Self { db, path: display };
        if rc != ffi::SQLITE_OK as c_int {
            return Err(reader.error("open", rc));
        }
        unsafe { ffi::sqlite3_busy_timeout(reader.db, 5000) };
        // Checkpoints happen only when the generation manager decides, never on this
        // connection's account.
        reader.exec("PRAGMA wal_autocheckpoint=0")?;
        Ok(reader)
    }

    /// Runs `f` inside a read transaction, with the WAL's committed frame count at its start.
    pub fn with_snapshot<T>(
        &mut self,
        f: impl FnOnce(&Self, u32) -> Result<T, WalError>,
    ) -> Result<T, WalError> {
        self.exec("BEGIN; SELECT count(*) FROM sqlite_schema;")?;
        let result = self.frame_count().and_then(|count| f(self, count));
        let _ = self.exec("COMMIT");
        result
    }

    /// Frames `start..=end` (1-based) concatenated, as the sync protocol sends them.
    pub fn frames(&self, start: u32, end: u32) -> Result<Vec<u8>, WalError> {
        let mut out = vec![0u8; FRAME_BYTES * (end + 1).saturating_sub(start) as usize];
        for (i, frame_no) in (start..=end).enumerate() {
            let buf = &mut out[i * FRAME_BYTES..(i + 1) * FRAME_BYTES];
            let rc = unsafe {
                ffi::libsql_wal_get_frame(
                    self.db,
                    frame_no as c_uint,
                    buf.as_mut_ptr() as *mut c_void,
                    FRAME_BYTES as c_uint,
                )
            };
            if rc != ffi::SQLITE_OK as c_int {
                return Err(self.error(&format!("read frame {frame_no}"), rc));
            }
        }
        Ok(out)
    }

    /// Copies every WAL frame into the database file and empties the WAL. The caller must make
    /// sure no writer commits meanwhile; readers are waited for (busy timeout).
    pub fn checkpoint_truncate(&self) -> Result<(), WalError> {
        let started = Instant::now();
        loop {
            let (mut log, mut done) = (0, 0);
            let rc = unsafe {
                ffi::sqlite3_wal_checkpoint_v2(
                    self.db,
                    std::ptr::null(),
                    ffi::SQLITE_CHECKPOINT_TRUNCATE as c_int,
                    &mut log,
                    &mut done,
                )
            };
            if rc == ffi::SQLITE_OK as c_int {
                return Ok(());
            }
            if rc != ffi::SQLITE_BUSY as c_int || started.elapsed() > BUSY_FOR {
                return Err(self.error("checkpoint", rc));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn frame_count(&self) -> Result<u32, WalError> {
        let started = Instant::now();
        loop {
            let mut count: c_uint = 0;
            let rc = unsafe { ffi::libsql_wal_frame_count(self.db, &mut count) };
            if rc == ffi::SQLITE_OK as c_int {
                return Ok(count);
            }
            // The count briefly takes the WAL write lock; a writer mid-commit holds it (for
            // well under a millisecond per KV batch).
            if rc != ffi::SQLITE_BUSY as c_int || started.elapsed() > BUSY_FOR {
                return Err(self.error("frame count", rc));
            }
            std::thread::sleep(Duration::from_micros(250));
        }
    }

    fn exec(&self, sql: &str) -> Result<(), WalError> {
        let c_sql = CString::new(sql).expect("static SQL");
        let rc = unsafe {
            ffi::sqlite3_exec(
                self.db,
                c_sql.as_ptr(),
                None,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            )
        };
        if rc != ffi::SQLITE_OK as c_int {
            return Err(self.error(sql, rc));
        }
        Ok(())
    }

    fn error(&self, what: &str, rc: c_int) -> WalError {
        let detail = if self.db.is_null() {
            String::new()
        } else {
            unsafe { CStr::from_ptr(ffi::sqlite3_errmsg(self.db)) }
                .to_string_lossy()
                .into_owned()
        };
        WalError {
            path: self.path.clone(),
            message: format!("{what} failed ({rc}): {detail}"),
        }
    }
}

impl Drop for WalReader {
    fn drop(&mut self) {
        if !self.db.is_null() {
            unsafe { ffi::sqlite3_close_v2(self.db) };
        }
    }
}
