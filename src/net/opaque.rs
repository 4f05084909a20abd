//! Request ids, as gecko's OpaqueGenerator hands them out (docs/protocol.md §2.1):
//! one process-wide counter from `i32::MIN`, back to `i32::MIN` once it
//! reaches `i32::MAX - 10`.

use std::sync::atomic::{AtomicI32, Ordering};

static NEXT: AtomicI32 = AtomicI32::new(i32::MIN);

/// The next opaque. Unique among the requests in flight on any connection
/// unless four billion requests are outstanding at once.
pub(crate) fn next_opaque() -> i32 {
    let mut current = NEXT.load(Ordering::Relaxed);
    loop {
        let next = if current >= i32::MAX - 10 {
            i32::MIN
        } else {
            current + 1
        };
        match NEXT.compare_exchange_weak(current, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return current,
            Err(actual) => current = actual,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opaques_are_distinct() {
        let a = next_opaque();
        let b = next_opaque();
        assert_ne!(a, b);
    }
}
