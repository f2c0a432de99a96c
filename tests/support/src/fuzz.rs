//! Replaying a fuzz target's committed corpus in plain `cargo test` (no nightly, no libFuzzer),
//! through the same checks as the target, so what the fuzzer found stays guarded.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

/// Runs `check` on every file of the corpus of fuzz target `target` of the crate at
/// `crate_dir` (its `fuzz/corpus/<target>/`), in name order, and gives what it returned for
/// each. Panics when the folder is empty, naming every file whose check panicked.
pub fn replay_corpus<T>(crate_dir: &str, target: &str, check: impl Fn(&[u8]) -> T) -> Vec<T> {
    let dir = &Path::new(crate_dir).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "empty fuzz corpus in {}", dir.display());
    let mut results = Vec::with_capacity(files.len());
    let mut failed = Vec::new();
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        match catch_unwind(AssertUnwindSafe(|| check(&bytes))) {
            Ok(result) => results.push(result),
            Err(_) => failed.push(path.display().to_string()),
        }
    }
    assert!(failed.is_empty(), "invariants broken by: {failed:#?}");
    eprintln!("{}: {} corpus files replayed", dir.display(), files.len());
    results
}

/// The allocator of the targets that read whole untrusted files: it refuses (and so aborts the
/// process, which the fuzzer reports) any request that would take the bytes held past `CAP`.
pub struct CappedAllocator<const CAP: usize>;

static HELD: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

// SAFETY: every call is forwarded to the system allocator with the same layout; the counter
// only decides whether to forward an allocation at all.
unsafe impl<const CAP: usize> std::alloc::GlobalAlloc for CappedAllocator<CAP> {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        use std::sync::atomic::Ordering;
        let held = HELD.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
        if held > CAP {
            HELD.fetch_sub(layout.size(), Ordering::Relaxed);
            return std::ptr::null_mut();
        }
        // SAFETY: the caller's layout is passed on unchanged.
        unsafe { std::alloc::System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        HELD.fetch_sub(layout.size(), std::sync::atomic::Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
}
