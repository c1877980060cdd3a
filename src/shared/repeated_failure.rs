//! A failure that repeats (a full disk refusing every write, a database
//! that stays down): counted every time, logged once per cause, and once
//! more when it ends, so the log says what happened without a line per
//! retry. Knows nothing of what failed.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct RepeatedFailure {
    /// The cause of the failures going on; None while things work.
    current: Mutex<Option<String>>,
    count: AtomicU64,
}

impl RepeatedFailure {
    /// Counts a failure; true when its cause is new (none before, or
    /// another one): the caller logs it then, and not otherwise.
    pub fn failed(&self, cause: &str) -> bool {
        self.count.fetch_add(1, Ordering::Relaxed);
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if current.as_deref() == Some(cause) {
            return false;
        }
        *current = Some(cause.to_string());
        true
    }

    /// A success; true when it ends failures (log that it recovered).
    pub fn succeeded(&self) -> bool {
        self.current
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take()
            .is_some()
    }

    /// Failures counted, for a metric.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_cause_is_told_once_and_its_end_once() {
        let failure = super::RepeatedFailure::default();
        assert!(!failure.succeeded());
        assert!(failure.failed("disk full"));
        assert!(!failure.failed("disk full"));
        assert!(failure.failed("permission denied"));
        assert!(!failure.failed("permission denied"));
        assert!(failure.succeeded());
        assert!(!failure.succeeded());
        assert!(failure.failed("disk full"));
        assert_eq!(failure.count(), 5);
    }
}
