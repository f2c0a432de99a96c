//! Resident memory after each stage of bringing a bundle up and scoring frames, beside the live
//! heap a counting allocator sees: what the runtime holds, told apart from what the allocator
//! keeps around it. This is where napd's peak RSS is measured apart.
//!
//! `cargo run --release -p nap-runtime --example memory_profile -- MODEL.nap IMAGE [FRAMES [THREADS]]`

use nap_runtime::backbone::BackboneOptions;
use nap_runtime::bundle::Bundle;
use nap_runtime::detector::Detector;
use nap_runtime::preprocess::Preprocessor;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// The system allocator, counting live heap bytes and their high-water mark.
struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds the
// contract; the counters on the side touch no memory the allocator hands out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let live = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(live, Relaxed);
        // SAFETY: the caller's layout, as GlobalAlloc::alloc requires it.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from this allocator, that is from System, with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new: usize) -> *mut u8 {
        let live = LIVE.fetch_add(new, Relaxed) + new - layout.size();
        LIVE.fetch_sub(layout.size(), Relaxed);
        PEAK.fetch_max(live, Relaxed);
        // SAFETY: `ptr` came from System with `layout`; the caller guarantees `new` is valid.
        unsafe { System.realloc(ptr, layout, new) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn status(stage: &str) {
    let text = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kib| kib / 1024)
    };
    let mib = |b: usize| b >> 20;
    println!(
        "{stage:<16} heap {:>3} MiB (peak {:>3})  rss {:>3} MiB (anon {:>3}, file {:>3})  peak rss {:>3} MiB",
        mib(LIVE.load(Relaxed)),
        mib(PEAK.swap(LIVE.load(Relaxed), Relaxed)),
        field("VmRSS:"),
        field("RssAnon:"),
        field("RssFile:"),
        field("VmHWM:")
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let [_, bundle, image, rest @ ..] = &args[..] else {
        return Err("usage: memory_profile MODEL.nap IMAGE [FRAMES [THREADS]]".into());
    };
    let frames: usize = rest.first().map_or(Ok(20), |f| f.parse())?;
    let threads: usize = rest.get(1).map_or(Ok(1), |f| f.parse())?;
    status("start");
    let bundle = Bundle::read(bundle)?;
    status("bundle read");
    let pre = Preprocessor::new(bundle.manifest.input)?;
    let detector = Detector::from_bundle(bundle, BackboneOptions::default())?;
    status("detector built");
    let bytes = std::fs::read(image)?;
    let score = |frames: usize| -> Result<(), String> {
        let mut worker = detector.worker().map_err(|e| e.to_string())?;
        for _ in 0..frames {
            let input = pre
                .tensor_vec_from_encoded(&bytes)
                .map_err(|e| e.to_string())?;
            detector
                .analyze(&mut worker, input)
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    };
    score(1)?;
    status("first frame");
    std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads).map(|_| s.spawn(|| score(frames))).collect();
        workers
            .into_iter()
            .try_for_each(|w| w.join().expect("worker panicked"))
    })?;
    status(&format!("{frames} frames x{threads}"));
    Ok(())
}
