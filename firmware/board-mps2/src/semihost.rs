//! Semihosting: the emulator's stdout for text, its stderr for defmt frames, and the exit code.
//!
//! Under `qemu-system-arm -semihosting-config enable=on,target=native` these reach the QEMU
//! process: stdout carries the human-readable event log the end-to-end test checks, stderr the
//! binary defmt stream (decode it with `defmt-print -e <elf>`). Keeping them apart keeps each
//! readable. On a real board with a debug probe, the same calls go to the probe (slow, but only
//! used for logs).

use core::cell::RefCell;
use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m::interrupt::{self, Mutex};
use cortex_m_semihosting::{debug, hio};

pub use cortex_m_semihosting::hprintln as println;

/// Ends the emulation with exit status 0 (`true`) or 1 (`false`).
pub fn exit(success: bool) -> ! {
    debug::exit(if success {
        debug::EXIT_SUCCESS
    } else {
        debug::EXIT_FAILURE
    });
    // Only reached without a semihosting host (e.g. on a board without a probe): stop here.
    loop {
        cortex_m::asm::wfi();
    }
}

static STDERR: Mutex<RefCell<Option<hio::HostStream>>> = Mutex::new(RefCell::new(None));
static DEFMT_MUTED: AtomicBool = AtomicBool::new(false);

/// Drops defmt output from now on. For the on-target tests: they check results directly, and
/// binary defmt frames would only clutter the text a test runner shows.
pub fn mute_defmt() {
    DEFMT_MUTED.store(true, Ordering::Relaxed);
}

/// Writes raw bytes to the host's stderr (opened on first use; dropped silently without a host).
fn write_stderr(bytes: &[u8]) {
    if DEFMT_MUTED.load(Ordering::Relaxed) {
        return;
    }
    interrupt::free(|cs| {
        let mut stream = STDERR.borrow(cs).borrow_mut();
        if stream.is_none() {
            *stream = hio::hstderr().ok();
        }
        if let Some(s) = stream.as_mut() {
            let _ = s.write_all(bytes);
        }
    });
}

#[defmt::global_logger]
struct Logger;

static TAKEN: AtomicBool = AtomicBool::new(false);
static mut RESTORE: bool = false;
static mut ENCODER: defmt::Encoder = defmt::Encoder::new();

// SAFETY: defmt calls acquire/write/flush/release in that order from one context at a time;
// `acquire` disables interrupts, so nothing else can log until `release`, and `TAKEN` catches a
// nested call from the logger itself.
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        let primask = cortex_m::register::primask::read();
        cortex_m::interrupt::disable();
        if TAKEN.swap(true, Ordering::Acquire) {
            // A log call from inside the logger: unrecoverable nesting.
            panic!("defmt logger taken reentrantly");
        }
        // SAFETY: interrupts are off and TAKEN is ours: nothing else touches these statics.
        unsafe {
            RESTORE = primask.is_active();
            (*core::ptr::addr_of_mut!(ENCODER)).start_frame(write_stderr);
        }
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called after `acquire`, which holds the logger with interrupts off.
        unsafe {
            (*core::ptr::addr_of_mut!(ENCODER)).end_frame(write_stderr);
            TAKEN.store(false, Ordering::Release);
            if RESTORE {
                cortex_m::interrupt::enable();
            }
        }
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: as in `release`.
        unsafe { (*core::ptr::addr_of_mut!(ENCODER)).write(bytes, write_stderr) }
    }
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    cortex_m::interrupt::disable();
    println!("panic: {}", info);
    exit(false)
}
