//! Password hashing behind a bound. argon2id takes ~19 MiB and ~50 ms per
//! hash; run one per request and a burst of logins takes gigabytes. So
//! hashing happens on a fixed set of threads (about one per core), fed by
//! a queue of bounded length: a request that finds the queue full is told
//! at once that the server is busy (503) instead of waiting or growing
//! memory. Memory for hashing is then at most threads x 19 MiB.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};

type Job = Box<dyn FnOnce() + Send>;

/// The queue was full: answer 503 now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Busy;

/// The hashing threads and their queue.
#[derive(Debug)]
pub struct PasswordHasher {
    jobs: SyncSender<Job>,
    /// Hashes computed or checked (metrics; tests see that a refused
    /// request never reached the hasher).
    pub done: Arc<AtomicU64>,
    /// Requests turned away because the queue was full.
    pub refused: AtomicU64,
    pub threads: usize,
    pub queue: usize,
}

impl PasswordHasher {
    /// `threads` hashing threads and room for `queue` waiting jobs.
    pub fn new(threads: usize, queue: usize) -> PasswordHasher {
        let threads = threads.max(1);
        let (jobs, receiver) = sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        let done = Arc::new(AtomicU64::new(0));
        for i in 0..threads {
            let receiver = receiver.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("timepool-hash-{i}"))
                .spawn(move || work(&receiver));
            if let Err(error) = spawned {
                tracing::error!(%error, "cannot start a password hashing thread");
            }
        }
        PasswordHasher {
            jobs,
            done,
            refused: AtomicU64::new(0),
            threads,
            queue,
        }
    }

    /// Runs `job` on a hashing thread, or `Busy` at once if the queue is
    /// full.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, Busy> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let done = self.done.clone();
        let job: Job = Box::new(move || {
            let value = job();
            // Counted before the reply, so whoever sees the reply sees
            // the count too.
            done.fetch_add(1, Ordering::Relaxed);
            let _ = reply.send(value);
        });
        match self.jobs.try_send(job) {
            Ok(()) => result.await.map_err(|_| Busy),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                Err(Busy)
            }
        }
    }
}

/// A hashing thread: jobs until the hasher is dropped.
fn work(receiver: &Mutex<Receiver<Job>>) {
    loop {
        let job = match receiver.lock() {
            Ok(receiver) => receiver.recv(),
            Err(_) => return,
        };
        let Ok(job) = job else { return };
        job();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_queue_refuses_at_once() {
        let hasher = Arc::new(PasswordHasher::new(1, 1));
        let (started, started_rx) = std::sync::mpsc::channel::<()>();
        let (release, release_rx) = std::sync::mpsc::channel::<()>();
        // One job holds the only thread...
        let holding = {
            let hasher = hasher.clone();
            tokio::spawn(async move {
                hasher
                    .run(move || {
                        let _ = started.send(());
                        let _ = release_rx.recv();
                        1
                    })
                    .await
            })
        };
        started_rx.recv().unwrap();
        // ...one waits in the queue, so the next is refused.
        assert!(hasher.jobs.try_send(Box::new(|| {})).is_ok());
        assert_eq!(hasher.run(|| 3).await, Err(Busy));
        assert_eq!(hasher.refused.load(Ordering::Relaxed), 1);
        release.send(()).unwrap();
        assert_eq!(holding.await.unwrap(), Ok(1));
        // Freed, it takes jobs again: once the thread has also taken the
        // queued one (which may come a moment after the first's reply).
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            match hasher.run(|| 2).await {
                Ok(value) => break assert_eq!(value, 2),
                Err(Busy) if std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
                Err(Busy) => panic!("still busy 10 s after the queue was freed"),
            }
        }
    }
}
