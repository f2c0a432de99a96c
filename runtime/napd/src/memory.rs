//! What the daemon hands back to the system once the model is loaded.
//!
//! Loading runs far more code and allocates far more than scoring: the ONNX parser, tract's
//! graph rewrites and optimizer, and their temporary tensors. Both stay resident after loading
//! unless given back, and a board that budgets the daemon's resident memory pays for them for the
//! daemon's whole life.

/// Returns the heap's free pages to the system (glibc keeps them otherwise): tens of MiB that
/// loading freed in the main thread's heap, which no worker thread reuses. Then fixes how much
/// free memory each thread's heap may keep from then on.
///
/// glibc adapts both limits to the largest block freed so far, and loading frees blocks as
/// large as the model file: left adaptive, each worker's heap would keep up to twice that free
/// (measured: 16-21 MiB per worker, for a frame that needs 3-4 MiB live). Blocks under
/// [`MMAP_THRESHOLD`] (every tensor of a frame) come from the heap and are reused frame after
/// frame; larger ones (a big photo's pixels) are mapped and returned whole; a heap trims its
/// free top beyond [`TRIM_THRESHOLD`].
pub fn release_freed_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free memory to the kernel and mallopt only sets limits;
    // neither has preconditions.
    unsafe {
        libc::malloc_trim(0);
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
    }
}

/// Blocks this large or larger are mapped on their own (MobileNetV2's largest frame tensor
/// after the expansion fusion is 1.8 MB).
const MMAP_THRESHOLD: i32 = 4 << 20;
/// Free memory a thread's heap keeps at its top: room for a frame's tensors, so that the next
/// frame does not fault them in again.
const TRIM_THRESHOLD: i32 = 8 << 20;

/// Drops this process's resident pages of code mapped from files (the executable's and the
/// libraries' machine code, about 14 MiB after loading a model, most of it the loader's). The
/// pages stay in the page cache: code that runs again faults its page back in from there, at the
/// cost of a minor fault.
///
/// Only read-only, executable, private mappings with no privately changed page are released:
/// discarding a changed page (a debugger's breakpoint) would bring back the file's bytes. Data is
/// never touched, not even read-only constants, since relocated constants look unchanged where
/// the kernel's accounting is emulated (qemu-user). Returns the bytes of the mappings released.
#[cfg(target_os = "linux")]
pub fn release_startup_code() -> usize {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let mut released = 0;
    for mapping in file_mappings(&smaps) {
        if mapping.code && mapping.anonymous_kib == Some(0) {
            // SAFETY: the range is a whole mapping of this process's code, read-only and holding
            // only pages equal to the file's, so dropping them loses nothing: the next access
            // reads the same bytes back.
            let done = unsafe {
                libc::madvise(
                    mapping.start as *mut libc::c_void,
                    mapping.end - mapping.start,
                    libc::MADV_DONTNEED,
                )
            };
            if done == 0 {
                released += mapping.end - mapping.start;
            }
        }
    }
    released
}

/// Without /proc there is nothing to read the mappings from.
#[cfg(not(target_os = "linux"))]
pub fn release_startup_code() -> usize {
    0
}

/// One mapping of `/proc/self/smaps`, as far as [`release_startup_code`] needs it.
#[derive(Debug, PartialEq)]
struct Mapping {
    start: usize,
    end: usize,
    /// Machine code: mapped from a file, readable, not writable, executable, private.
    code: bool,
    /// Its `Anonymous:` field: privately changed pages, in KiB.
    anonymous_kib: Option<u64>,
}

/// The mappings of an smaps text that come from a file.
fn file_mappings(smaps: &str) -> Vec<Mapping> {
    let mut mappings: Vec<Mapping> = Vec::new();
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let Some(first) = fields.next() else {
            continue;
        };
        if let Some((start, end)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (
                usize::from_str_radix(start, 16),
                usize::from_str_radix(end, 16),
            )
        {
            // "start-end perms offset dev inode [path]": a new mapping.
            mappings.extend(current.take());
            let perms = fields.next().unwrap_or("");
            let path = fields.nth(3);
            if path.is_some_and(|p| p.starts_with('/')) && start < end {
                current = Some(Mapping {
                    start,
                    end,
                    code: perms == "r-xp",
                    anonymous_kib: None,
                });
            }
        } else if first == "Anonymous:"
            && let Some(m) = current.as_mut()
        {
            m.anonymous_kib = fields.next().and_then(|v| v.parse().ok());
        }
    }
    mappings.extend(current);
    mappings
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
55c9c24d6000-55c9c2a4a000 r--p 00000000 fd:01 123 /usr/bin/napd
Rss:                2024 kB
Anonymous:             0 kB
55c9c2a4a000-55c9c422a000 r-xp 00574000 fd:01 123 /usr/bin/napd
Anonymous:             0 kB
7f21b823c000-7f21b8392000 r-xp 00028000 fd:01 456 /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             4 kB
55c9c422a000-55c9c42e8000 r--p 01d54000 fd:01 123 /usr/bin/napd
Anonymous:           760 kB
55c9c42e8000-55c9c42ea000 rw-p 01e12000 fd:01 123 /usr/bin/napd
Anonymous:             8 kB
55c9e6226000-55c9e728a000 rw-p 00000000 00:00 0 [heap]
Anonymous:          9780 kB
7f21b6fd9000-7f21b74bc000 rw-p 00000000 00:00 0
Anonymous:          5004 kB
";

    #[test]
    fn only_unchanged_code_mappings_are_released() {
        let released: Vec<(usize, usize)> = file_mappings(SMAPS)
            .into_iter()
            .filter(|m| m.code && m.anonymous_kib == Some(0))
            .map(|m| (m.start, m.end))
            .collect();
        // The code (unchanged) and not the one with a breakpoint; no constants, data, heap or
        // anonymous memory.
        assert_eq!(released, [(0x55c9c2a4a000, 0x55c9c422a000)]);
    }

    #[test]
    fn releasing_keeps_the_process_working() {
        // Code and constants this test then uses again come back from the page cache.
        let before = file_mappings(&std::fs::read_to_string("/proc/self/smaps").unwrap());
        assert!(before.iter().any(|m| m.code));
        assert!(release_startup_code() > 0);
        let text = format!("{:?}", (1..5).map(|x| x * x).collect::<Vec<_>>());
        assert_eq!(text, "[1, 4, 9, 16]");
    }
}
