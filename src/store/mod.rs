//! Everything SQLite: migrations, the build and log tables, and the two ways in.
//! Writes go through the one writer connection on its own thread
//! (`writer.rs`); reads use a pool of read-only connections on tokio's
//! blocking pool. Nothing here runs SQLite on the async threads.
//!
//! This file opens the database and holds the two ways in; the queries live
//! beside what they are about: `builds.rs` (build rows), `queue.rs` (claiming,
//! requeueing, counts), `logs.rs`, `deliveries.rs`, `sharing.rs` (tags shared
//! between builds), with the row mapping in `rows.rs`.

mod builds;
mod deliveries;
mod files;
mod lock;
mod logs;
mod migrations;
mod private;
mod queue;
mod rows;
mod sharing;
mod triggers;
mod writer;

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use r2d2::Pool;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, Transaction, TransactionBehavior};
use tokio::sync::Semaphore;

use crate::domain::{Build, Status};
pub(crate) use files::BuildFiles;
pub(crate) use lock::DataDirLock;
pub use lock::LockError;
pub use logs::{LogPage, LogRange, LogTotals, RenderLine, PAGE_BYTES};
pub use sharing::PublishedTag;
pub use triggers::TriggerDelivery;
use writer::Writer;

/// Why the store could not read or write.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No read connection could be had from the pool.
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// SQLite refused a query or a transaction (a full disk among them, see
    /// [`StoreError::is_disk_full`]).
    #[error("database: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// A build's files (its Dockerfile, its context) could not be read or written.
    #[error("stored files: {0}")]
    Io(#[from] std::io::Error),
    /// The database was migrated by a newer dockpub; this one will not guess
    /// what the newer schema means.
    #[error("database schema version {found} is newer than this dockpub knows ({known})")]
    SchemaTooNew {
        /// The database's schema version.
        found: usize,
        /// The newest version this build of dockpub has migrations for.
        known: usize,
    },
    /// A row dockpub just wrote is missing, or a row holds a value dockpub
    /// never writes (an unknown status, a bad timestamp).
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    /// A submission was refused: `max_queued_builds` builds already wait.
    #[error("the queue is full ({limit} builds wait)")]
    QueueFull {
        /// The configured `max_queued_builds`.
        limit: usize,
    },
    /// The blocking task that ran a read panicked or was cancelled.
    #[error("store task did not finish: {0}")]
    Task(#[from] tokio::task::JoinError),
    /// The writer thread is gone (the store is shutting down or it panicked),
    /// so the write may or may not have happened.
    #[error("the store's writer stopped before the write finished")]
    WriterGone,
}

impl StoreError {
    /// SQLite or the data directory ran out of space: nothing is wrong but room.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StoreError::Sqlite(rusqlite::Error::SqliteFailure(failure, _)) => {
                failure.code == rusqlite::ErrorCode::DiskFull
            }
            StoreError::Io(err) => err.kind() == std::io::ErrorKind::StorageFull,
            _ => false,
        }
    }
}

/// Fields a status change may set besides the status itself.
#[derive(Debug, Default, Clone)]
pub struct Changes {
    /// The built image's id, once the build step has one.
    pub image_id: Option<String>,
    /// The digest the registry confirmed for the pushed image.
    pub digest: Option<String>,
    /// The confirmed digest of every pushed tag, by tag.
    pub digests: Option<BTreeMap<String, String>>,
    /// Why the build failed, as the user should read it.
    pub error: Option<String>,
    /// Each platform's image and manifest, for a build of several platforms.
    pub platforms: Option<Vec<crate::domain::PlatformImage>>,
    /// The provenance attestation pushed with the image.
    pub provenance: Option<crate::domain::ProvenanceRecord>,
}

/// Which builds a list returns, newest first.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct ListFilter {
    /// Only builds in this status.
    pub status: Option<Status>,
    /// Only builds with an id below this one (paging cursor).
    pub before: Option<i64>,
    /// Only builds submitted with the token of this name.
    pub submitted_by: Option<String>,
    /// At most this many builds.
    pub limit: usize,
    /// And, after the first, only builds while their rows come to at most this
    /// many bytes as JSON (see `rows::json_bytes`); None: no bound but `limit`.
    pub max_bytes: Option<usize>,
}

/// A list of builds, and whether `max_bytes` cut it short.
#[derive(Debug, Default)]
pub struct Listed {
    /// Newest first.
    pub builds: Vec<Build>,
    /// More builds matched, but their rows would pass `max_bytes`.
    pub cut_short: bool,
}

/// How long a connection waits for a lock held by another process (the writer
/// never waits for this process: it is alone) before giving up.
const BUSY_LIMIT: Duration = Duration::from_secs(5);
const BUSY_NAP: Duration = Duration::from_millis(1);

/// Page cache per read connection, in KiB (SQLite's negative `cache_size`).
const READER_CACHE_KIB: i64 = -256;

/// Read connections: as many reads run at once, each on a blocking thread.
const READERS: u32 = 8;

/// Every time a connection of this process slept in SQLite's busy handler.
static BUSY_WAITS: AtomicU64 = AtomicU64::new(0);

/// Less free space than this on the data directory's disk counts as full.
const NEARLY_FULL_BYTES: u64 = 256 * 1024;
/// After a write failed for space, the disk counts as full until this is free.
const ROOMY_BYTES: u64 = 16 * 1024 * 1024;

/// The database and the builds' files in a data directory. Cheap to clone: the
/// clones share the one writer and the read pool.
#[derive(Clone)]
pub struct Store {
    readers: Pool<SqliteConnectionManager>,
    /// One per read connection: a read waits here, on no thread, until a
    /// connection is free. Without it 500 followers reading at once would
    /// each hold a blocking thread (and its stack) waiting in the pool.
    read_slots: Arc<Semaphore>,
    writer: Arc<Writer>,
    /// Moves after every committed write that may change a build row, before the
    /// write's caller hears back: an answer read at generation N shows every write
    /// whose caller had returned when N was read.
    generation: Arc<AtomicU64>,
    /// Set when the last write failed for want of space; cleared by the next
    /// write that succeeds (see [`Store::disk_full`]).
    disk_full: Arc<AtomicBool>,
    files: BuildFiles,
    /// This data directory's own name among the dockpubs sharing a daemon (see
    /// [`Store::instance`]).
    instance: Arc<str>,
}

/// Whether a write can change what a build's JSON shows.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Seen {
    InBuilds,
    /// Log lines and webhook deliveries: not part of a build's JSON.
    Elsewhere,
}

impl Store {
    /// Opens (creating if needed) `data_dir/dockpub.sqlite3` and `data_dir/builds/`,
    /// and applies pending migrations.
    pub fn open(data_dir: &Path) -> Result<Store, StoreError> {
        private::private_dir(data_dir)?;
        let path = data_dir.join("dockpub.sqlite3");
        private::private_file(&path)?;
        for companion in ["dockpub.sqlite3-wal", "dockpub.sqlite3-shm"] {
            private::tighten_if_present(&data_dir.join(companion))?;
        }
        let mut writer = Connection::open(&path)?;
        configure(&writer)?;
        migrations::apply(&mut writer)?;
        let manager = SqliteConnectionManager::file(&path).with_init(|conn| {
            configure(conn)?;
            // A write slipped onto a read connection fails loudly instead of
            // racing the writer.
            conn.pragma_update(None, "query_only", true)?;
            // Each connection keeps its own page cache (2 MiB by default): with
            // eight of them streaming big logs that alone would be 16 MiB. The
            // kernel caches the file anyway.
            conn.pragma_update(None, "cache_size", READER_CACHE_KIB)
        });
        // No test query on every checkout: a connection to a local file does not go
        // stale the way a network connection does, and r2d2_sqlite's test parses and
        // runs `SELECT 1` each time (a measurable share of a `GET` on the API).
        let readers = Pool::builder()
            .max_size(READERS)
            .test_on_check_out(false)
            .build(manager)?;
        let files = BuildFiles::open(data_dir.join("builds"), data_dir.join("uploads"))?;
        let instance = instance_of(data_dir)?.into();
        Ok(Store {
            readers,
            read_slots: Arc::new(Semaphore::new(READERS as usize)),
            writer: Arc::new(Writer::start(writer)?),
            generation: Arc::default(),
            disk_full: Arc::default(),
            files,
            instance,
        })
    }

    /// A random name of this data directory, made once and kept in
    /// `data_dir/instance`: the build names it leaves on a daemon carry it, so
    /// the names a crash left behind can be told from another dockpub's.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    pub(crate) fn files(&self) -> &BuildFiles {
        &self.files
    }

    /// See the field's comment: compare two readings to know whether anything a
    /// build's JSON shows may have changed in between.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }

    /// Whether the disk is full: the last write found no room and there is
    /// still little, or there is almost none at all. Writes fail until space is back.
    pub fn disk_full(&self) -> bool {
        let free = self.files.free_bytes().unwrap_or(u64::MAX);
        free < NEARLY_FULL_BYTES || (self.disk_full.load(Ordering::Relaxed) && free < ROOMY_BYTES)
    }

    /// How many times connections of this process slept waiting for a lock.
    /// Only another process writing the same database makes this move.
    pub fn busy_waits() -> u64 {
        BUSY_WAITS.load(Ordering::Relaxed)
    }

    /// Runs `work` with a read-only pooled connection on the blocking pool.
    async fn read<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, StoreError> + Send + 'static,
    {
        let pool = self.readers.clone();
        let slot = self
            .read_slots
            .clone()
            .acquire_owned()
            .await
            .expect("the read slots are never closed");
        tokio::task::spawn_blocking(move || {
            let _slot = slot;
            work(&*pool.get()?)
        })
        .await?
    }

    /// Runs `work` on the writer connection; `work` opens its own transaction
    /// with [`immediate`]. The generation moves once it has returned.
    async fn write<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &BuildFiles) -> Result<T, StoreError> + Send + 'static,
    {
        self.write_seen(Seen::InBuilds, work).await
    }

    async fn write_seen<T, F>(&self, seen: Seen, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection, &BuildFiles) -> Result<T, StoreError> + Send + 'static,
    {
        let files = self.files.clone();
        let generation = self.generation.clone();
        let result = self
            .writer
            .run(move |conn| {
                let result = work(conn, &files);
                if seen == Seen::InBuilds {
                    generation.fetch_add(1, Ordering::SeqCst);
                }
                result
            })
            .await?;
        let full = matches!(&result, Err(err) if err.is_disk_full());
        self.disk_full.store(full, Ordering::Relaxed);
        result
    }

    /// File work on the blocking pool, away from the writer.
    async fn files_blocking<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&BuildFiles) -> std::io::Result<T> + Send + 'static,
    {
        let files = self.files.clone();
        Ok(tokio::task::spawn_blocking(move || work(&files)).await??)
    }

    /// Whether SQLite answers.
    pub async fn ping(&self) -> Result<(), StoreError> {
        self.read(|conn| {
            Ok(conn
                .query_row("SELECT 1", [], |row| row.get::<_, i64>(0))
                .map(drop)?)
        })
        .await
    }
}

/// Opens a write transaction that takes the write lock at once, so it never has
/// to upgrade a read lock midway (which can fail with SQLITE_BUSY instead of
/// waiting).
fn immediate(conn: &mut Connection) -> rusqlite::Result<Transaction<'_>> {
    conn.transaction_with_behavior(TransactionBehavior::Immediate)
}

/// The pragmas every connection runs with.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL;
         PRAGMA synchronous = NORMAL;
         PRAGMA foreign_keys = ON;",
    )?;
    conn.busy_handler(Some(wait_when_busy))
}

/// SQLite's busy handler: counts each nap (see [`Store::busy_waits`]) and gives
/// up after [`BUSY_LIMIT`].
fn wait_when_busy(naps: i32) -> bool {
    BUSY_WAITS.fetch_add(1, Ordering::Relaxed);
    if u128::from(naps.unsigned_abs()) * BUSY_NAP.as_millis() >= BUSY_LIMIT.as_millis() {
        return false;
    }
    std::thread::sleep(BUSY_NAP);
    true
}

#[cfg(test)]
mod tests;

/// Reads `data_dir/instance`, writing a new random name there first if it has none.
fn instance_of(data_dir: &Path) -> std::io::Result<String> {
    let path = data_dir.join("instance");
    match std::fs::read_to_string(&path) {
        Ok(text) if is_instance_name(text.trim()) => return Ok(text.trim().to_string()),
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
        Err(err) => return Err(err),
    }
    let name = uuid::Uuid::new_v4().simple().to_string()[..12].to_string();
    std::fs::write(&path, format!("{name}\n"))?;
    Ok(name)
}

fn is_instance_name(text: &str) -> bool {
    text.len() == 12 && text.bytes().all(|b| b.is_ascii_hexdigit())
}
