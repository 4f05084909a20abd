//! The sends in flight, counted, and a wait for there being none: for
//! `flush` (which leaves the producer open) and `close`. A tokio
//! `TaskTracker` only wakes its waiters once closed, so `flush` could not
//! use one.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

#[derive(Debug, Default)]
struct Shared {
    count: AtomicUsize,
    idle: Notify,
}

/// Counts sends from start to end.
#[derive(Debug, Default)]
pub(crate) struct SendTracker {
    shared: Arc<Shared>,
}

/// One send in flight; dropping it (the send ended or was dropped) ends it.
#[derive(Debug)]
pub(crate) struct SendToken {
    shared: Arc<Shared>,
}

impl SendTracker {
    pub(crate) fn token(&self) -> SendToken {
        self.shared.count.fetch_add(1, Ordering::Relaxed);
        SendToken {
            shared: Arc::clone(&self.shared),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.shared.count.load(Ordering::Acquire)
    }

    /// Returns once no send is in flight (at once if none is).
    pub(crate) async fn idle(&self) {
        loop {
            let notified = self.shared.idle.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before the count is read, so a last send ending in
            // between still wakes this wait.
            notified.as_mut().enable();
            if self.len() == 0 {
                return;
            }
            notified.await;
        }
    }
}

impl Drop for SendToken {
    fn drop(&mut self) {
        if self.shared.count.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.shared.idle.notify_waiters();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn idle_waits_for_the_last_token() {
        let tracker = SendTracker::default();
        tracker.idle().await; // none in flight: at once
        let (a, b) = (tracker.token(), tracker.token());
        assert_eq!(tracker.len(), 2);
        let wait = tracker.idle();
        let mut wait = std::pin::pin!(wait);
        drop(a);
        assert!(
            tokio::time::timeout(Duration::from_millis(50), wait.as_mut())
                .await
                .is_err(),
            "idle with a send in flight"
        );
        drop(b);
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("idle once the last send ended");
        assert_eq!(tracker.len(), 0);
    }
}
