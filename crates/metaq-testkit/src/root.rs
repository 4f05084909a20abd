//! Unique ZooKeeper roots, so that tests sharing a server do not collide.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// A ZooKeeper path unique in this process and across processes:
/// `/metaq-test-<pid>-<seq>-<nanos>` (process id, a per-process counter, and
/// the time in nanoseconds since the Unix epoch).
///
/// Tests pass it as their MetaQ root, so that tests sharing
/// [`ZkServer::shared`](super::ZkServer::shared) never see each other's
/// nodes. The node itself is not created.
///
/// # Examples
///
/// ```
/// use metaq_testkit::unique_root;
///
/// let (a, b) = (unique_root(), unique_root());
/// assert!(a.starts_with("/metaq-test-"));
/// assert_ne!(a, b);
/// ```
pub fn unique_root() -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("/metaq-test-{}-{seq}-{nanos}", std::process::id())
}
