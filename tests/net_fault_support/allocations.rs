//! The largest single allocation made by the threads of one test's own
//! runtime, so a test can check that nothing it provoked allocated much,
//! whatever the other tests of the binary do meanwhile.
//!
//! The binary's global allocator notes the size of every allocation and
//! reallocation into the watch of the thread it happens on, if that thread
//! has one: the test's own thread and its runtime's workers and blocking
//! threads.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};

struct Watched;

thread_local! {
    // A `const` initialiser and no destructor: usable inside the allocator
    // (it never allocates and is never torn down).
    static WATCH: Cell<Option<&'static AtomicUsize>> = const { Cell::new(None) };
}

fn note(size: usize) {
    let _ = WATCH.try_with(|watch| {
        if let Some(largest) = watch.get() {
            largest.fetch_max(size, Ordering::Relaxed);
        }
    });
}

unsafe impl GlobalAlloc for Watched {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Watched = Watched;

/// The largest allocation seen by the watched threads since the last reset.
#[derive(Clone, Copy)]
pub struct LargestAllocation(&'static AtomicUsize);

impl LargestAllocation {
    /// A new watch (leaked: one per test).
    pub fn new() -> Self {
        LargestAllocation(Box::leak(Box::new(AtomicUsize::new(0))))
    }

    /// Runs `test` on a two-worker runtime whose threads, and this one,
    /// are watched.
    pub fn run<F: std::future::Future>(self, test: F) -> F::Output {
        let largest = self.0;
        let previous = WATCH.with(|watch| watch.replace(Some(largest)));
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .on_thread_start(move || WATCH.with(|watch| watch.set(Some(largest))))
            .build()
            .expect("a runtime");
        let output = runtime.block_on(test);
        drop(runtime);
        WATCH.with(|watch| watch.set(previous));
        output
    }

    /// Starts over from nothing.
    pub fn reset(self) {
        self.0.store(0, Ordering::Relaxed);
    }

    /// The largest allocation, in bytes, since the last reset.
    pub fn get(self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}
