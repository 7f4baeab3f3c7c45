//! The primary side of replication: serves the libsql sync protocol from a database's WAL and
//! owns its generations.
//!
//! A generation is a base image of the database file plus the WAL frames written on top of it.
//! The WAL is never checkpointed by SQLite itself (auto-checkpoint is off); when it passes
//! `max_frames` (and at startup and shutdown) [`GenerationLog::rollover`] archives the current
//! generation's frames, checkpoints the WAL into the database file (truncating it), and saves
//! the file as the next generation's base image. So the WAL stays bounded, new replicas
//! bootstrap from the current base image (`/export/{generation}`), and lagging replicas pull
//! the rest of their generation from its archive before moving on.
//!
//! Files, next to the database (`<db>-replication/`): `generation` (the current number),
//! `gen-<n>.db` (the current base image), `gen-<n>.frames` (archived frames of the last
//! `keep` completed generations).

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, RwLock};

use super::WalPosition;
use super::wal::{FRAME_BYTES, WalError, WalReader};

/// A replication failure on the primary.
#[derive(Debug, thiserror::Error)]
pub enum ReplicationError {
    /// Reading or checkpointing the WAL failed.
    #[error(transparent)]
    Wal(#[from] WalError),
    /// A generation file could not be read or written.
    #[error("replication files {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The database does not use 4 KiB pages, which the sync protocol requires.
    #[error("the database page size is {0}, the sync protocol needs 4096")]
    PageSize(usize),
}

/// What a pull request gets.
#[derive(Debug, PartialEq)]
pub enum Pull {
    /// Frames, concatenated.
    Frames(Vec<u8>),
    /// No frames at or after the start in that generation: the replica is caught up with it
    /// (and moves on if `generation` is newer).
    End {
        /// The current generation.
        generation: u32,
    },
    /// The generation's frames are no longer kept: the replica must bootstrap again.
    Gone {
        /// The oldest generation still served.
        oldest: u32,
    },
    /// The replica claims a generation this primary never had (its data was replaced).
    Ahead {
        /// The current generation.
        generation: u32,
    },
}

#[derive(Debug, Clone, Copy)]
struct State {
    current: u32,
    oldest: u32,
}

/// Generations of one database, served to replicas.
pub struct GenerationLog {
    db_path: PathBuf,
    dir: PathBuf,
    reader: Mutex<WalReader>,
    /// Counts frames for writers and the rollover check, so they never queue behind a pull
    /// reading frames on `reader`.
    counter: Mutex<WalReader>,
    state: RwLock<State>,
    max_frames: u32,
    keep: u32,
}

impl GenerationLog {
    /// Opens (or starts) the generations of the WAL-mode database at `db_path`, rolling over to
    /// a new generation when the WAL holds frames (a previous run ended without one). No other
    /// connection may commit while this runs.
    pub fn open(db_path: &Path, max_frames: u32, keep: u32) -> Result<Self, ReplicationError> {
        let dir = PathBuf::from(format!("{}-replication", db_path.display()));
        std::fs::create_dir_all(&dir).map_err(io(&dir))?;
        let current = match std::fs::read_to_string(dir.join("generation")) {
            Ok(text) => text.trim().parse().unwrap_or(0),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io(&dir)(e)),
        };
        let log = Self {
            db_path: db_path.to_owned(),
            reader: Mutex::new(WalReader::open(db_path)?),
            counter: Mutex::new(WalReader::open(db_path)?),
            state: RwLock::new(State {
                current,
                oldest: current,
            }),
            dir,
            max_frames: max_frames.max(1),
            keep: keep.max(1),
        };
        let oldest = (1..current)
            .rev()
            .take_while(|g| log.archive(*g).exists())
            .last()
            .unwrap_or(current);
        log.write_state().oldest = oldest.max(1);
        let pending = log.wal_frames()?;
        if current == 0 || pending > 0 || !log.base(current).exists() {
            log.rollover()?;
        }
        Ok(log)
    }

    /// The current generation and the oldest one whose frames are still served.
    pub fn generations(&self) -> (u32, u32) {
        let state = *self.read_state();
        (state.current, state.oldest)
    }

    /// Committed frames in the WAL now.
    pub fn wal_frames(&self) -> Result<u32, ReplicationError> {
        let mut counter = self.counter.lock().unwrap_or_else(|p| p.into_inner());
        Ok(counter.with_snapshot(|_, count| Ok(count))?)
    }

    /// Where the database's history stands now: the current generation and its committed
    /// frames. Called by the database's writer right after a commit (holding the writer, so no
    /// rollover runs in between), it is a position every replica that reaches it has that
    /// commit at.
    pub fn position(&self) -> Result<WalPosition, ReplicationError> {
        let generation = self.read_state().current;
        Ok(WalPosition {
            generation,
            frame: self.wal_frames()?,
        })
    }

    /// Whether the WAL has grown past the bound, so a rollover is due.
    pub fn rollover_due(&self) -> Result<bool, ReplicationError> {
        Ok(self.wal_frames()? >= self.max_frames)
    }

    /// The base image of `generation` when it is the current one.
    pub fn export(&self, generation: u32) -> Result<Option<Vec<u8>>, ReplicationError> {
        let state = self.read_state();
        if generation != state.current {
            return Ok(None);
        }
        let path = self.base(generation);
        std::fs::read(&path).map(Some).map_err(io(&path))
    }

    /// Frames `start..end` (1-based, end exclusive, as the client asks) of `generation`.
    pub fn pull(&self, generation: u32, start: u32, end: u32) -> Result<Pull, ReplicationError> {
        // Held throughout, so a rollover cannot truncate the WAL mid-read.
        let guard = self.read_state();
        let state = *guard;
        let start = start.max(1);
        let last = end.saturating_sub(1);
        if generation > state.current {
            return Ok(Pull::Ahead {
                generation: state.current,
            });
        }
        if generation == state.current {
            return Ok(self.lock_reader().with_snapshot(|reader, count| {
                if start > count || last < start {
                    return Ok(Pull::End {
                        generation: state.current,
                    });
                }
                Ok(Pull::Frames(reader.frames(start, last.min(count))?))
            })?);
        }
        let path = self.archive(generation);
        let bytes = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Pull::Gone {
                    oldest: state.oldest,
                });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let count = (bytes.len() / FRAME_BYTES) as u32;
        if start > count || last < start {
            return Ok(Pull::End {
                generation: state.current,
            });
        }
        let from = (start as usize - 1) * FRAME_BYTES;
        let to = last.min(count) as usize * FRAME_BYTES;
        Ok(Pull::Frames(bytes[from..to].to_vec()))
    }

    /// Archives the current generation's frames, checkpoints the WAL into the database file
    /// (emptying it) and makes the file the next generation's base image. The caller must hold
    /// the database's writer so nothing commits meanwhile.
    pub fn rollover(&self) -> Result<(), ReplicationError> {
        let mut state = self.write_state();
        let mut reader = self.lock_reader();
        if state.current > 0 {
            let frames = reader.with_snapshot(|r, count| {
                if count == 0 {
                    Ok(Vec::new())
                } else {
                    r.frames(1, count)
                }
            })?;
            atomic_write(&self.archive(state.current), &frames)?;
        }
        reader.checkpoint_truncate()?;
        drop(reader);
        let next = state.current + 1;
        let image = std::fs::read(&self.db_path).map_err(io(&self.db_path))?;
        if image.len() % 4096 != 0 {
            return Err(ReplicationError::PageSize(image.len() % 4096));
        }
        atomic_write(&self.base(next), &image)?;
        atomic_write(&self.dir.join("generation"), next.to_string().as_bytes())?;
        let _ = std::fs::remove_file(self.base(state.current));
        let oldest = next.saturating_sub(self.keep).max(1);
        for old in state.oldest.min(oldest)..oldest {
            let _ = std::fs::remove_file(self.archive(old));
        }
        tracing::info!(
            generation = next,
            oldest_served = oldest,
            "replication: new generation"
        );
        *state = State {
            current: next,
            oldest,
        };
        Ok(())
    }

    fn base(&self, generation: u32) -> PathBuf {
        self.dir.join(format!("gen-{generation}.db"))
    }

    fn archive(&self, generation: u32) -> PathBuf {
        self.dir.join(format!("gen-{generation}.frames"))
    }

    fn lock_reader(&self) -> std::sync::MutexGuard<'_, WalReader> {
        self.reader.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn read_state(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write_state(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ReplicationError + '_ {
    move |source| ReplicationError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Writes `bytes` to `path` through a synced temporary file and a rename.
fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), ReplicationError> {
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}
