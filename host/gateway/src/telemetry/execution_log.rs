//! Writes execution-log rows off the request path: requests enqueue into a bounded channel
//! (never waiting: a full queue drops the row and counts it), one writer thread gathers rows
//! for up to 100 ms and writes each batch in a single transaction, prunes old rows now and then, and flushes on shutdown.
//!
//! The writer has its own thread because libsql's local calls block while they run; on the
//! request runtime they would stall a worker for every batch.

use std::sync::Arc;
use std::time::Duration;

use alga_edge_registry::{ExecutionRecord, ExecutionStore};
use prometheus_client::metrics::counter::Counter;
use tokio::sync::{mpsc, oneshot};

/// Largest batch written in one transaction.
const MAX_BATCH: usize = 4096;
/// How long the writer gathers rows after the first one before it commits: one commit (and
/// its fsync) per window instead of per row keeps the writer's cost flat under load.
const GATHER: Duration = Duration::from_millis(100);
/// How often rows past the retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(600);

/// Execution-log settings.
#[derive(Debug, Clone)]
pub struct ExecutionLogConfig {
    /// Rows queued before new ones are dropped.
    pub queue: usize,
    /// How long rows (and usage windows) are kept.
    pub retention: Duration,
}

impl Default for ExecutionLogConfig {
    fn default() -> Self {
        Self {
            queue: 16_384,
            retention: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// The sending side, shared by every request.
pub struct ExecutionLog {
    sender: mpsc::Sender<ExecutionRecord>,
    dropped: Counter,
}

/// The writer task; [`LogWriter::flush_and_stop`] ends it after writing what is queued.
pub struct LogWriter {
    stop: oneshot::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

impl ExecutionLog {
    /// Starts the writer over `store`; `written` and `dropped` count rows.
    pub fn start(
        store: Arc<ExecutionStore>,
        config: ExecutionLogConfig,
        written: Counter,
        dropped: Counter,
    ) -> std::io::Result<(Self, LogWriter)> {
        let (sender, receiver) = mpsc::channel(config.queue.max(1));
        let (stop, stopped) = oneshot::channel();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()?;
        let log_dropped = dropped.clone();
        let thread = std::thread::Builder::new()
            .name("execution-log".into())
            .spawn(move || {
                runtime.block_on(write_loop(
                    store,
                    receiver,
                    stopped,
                    config.retention,
                    written,
                    log_dropped,
                ))
            })?;
        Ok((Self { sender, dropped }, LogWriter { stop, thread }))
    }

    /// Queues `record`; drops (and counts) it when the queue is full or the writer stopped.
    /// Whether it was queued.
    pub fn record(&self, record: ExecutionRecord) -> bool {
        match self.sender.try_send(record) {
            Ok(()) => true,
            Err(error) => {
                self.dropped.inc();
                tracing::debug!("execution-log row dropped: {error}");
                false
            }
        }
    }
}

impl LogWriter {
    /// Writes every queued row, then stops; gives up after `bound`.
    pub async fn flush_and_stop(self, bound: Duration) {
        let _ = self.stop.send(());
        let thread = self.thread;
        let joined = tokio::task::spawn_blocking(move || thread.join());
        if tokio::time::timeout(bound, joined).await.is_err() {
            tracing::warn!("execution log: flush did not finish within {bound:?}");
        }
    }
}

async fn write_loop(
    store: Arc<ExecutionStore>,
    mut receiver: mpsc::Receiver<ExecutionRecord>,
    mut stopped: oneshot::Receiver<()>,
    retention: Duration,
    written: Counter,
    dropped: Counter,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    let mut prune = tokio::time::interval(PRUNE_EVERY);
    loop {
        tokio::select! {
            received = receiver.recv_many(&mut batch, MAX_BATCH) => {
                if received == 0 {
                    return;
                }
                // Let the window's rows queue up without listening: a receiver that waits on
                // the channel is woken (a futex call and a context switch) by every row sent,
                // which cost a loaded node about a tenth of its CPU. The queue holds the
                // window's rows (`--execution-log-queue`).
                // A full batch means rows are waiting: write it at once.
                if batch.len() < MAX_BATCH {
                    tokio::time::sleep(GATHER).await;
                    while batch.len() < MAX_BATCH {
                        match receiver.try_recv() {
                            Ok(row) => batch.push(row),
                            Err(_) => break,
                        }
                    }
                }
                write(&store, &mut batch, &written, &dropped).await;
            }
            _ = prune.tick() => {
                let before = now() - i64::try_from(retention.as_secs()).unwrap_or(i64::MAX);
                match store.prune_executions(before).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(rows = n, "execution log: pruned rows past the retention"),
                    Err(e) => tracing::warn!("execution log: pruning failed: {e}"),
                }
            }
            _ = &mut stopped => {
                receiver.close();
                while receiver.recv_many(&mut batch, MAX_BATCH).await > 0 {
                    write(&store, &mut batch, &written, &dropped).await;
                }
                return;
            }
        }
    }
}

async fn write(
    store: &ExecutionStore,
    batch: &mut Vec<ExecutionRecord>,
    written: &Counter,
    dropped: &Counter,
) {
    let count = batch.len() as u64;
    // One retry covers a transient busy database; a persistent failure must not stall the
    // queue, so the batch is then dropped and counted.
    let mut result = store.record_executions(batch).await;
    if result.is_err() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        result = store.record_executions(batch).await;
    }
    match result {
        Ok(()) => {
            written.inc_by(count);
        }
        Err(e) => {
            dropped.inc_by(count);
            tracing::error!(
                rows = count,
                "execution log: write failed, rows dropped: {e}"
            );
        }
    }
    batch.clear();
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
