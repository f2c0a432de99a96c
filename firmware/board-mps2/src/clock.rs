//! A 100 Hz tick from SysTick: the controller's notion of time.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;
use nap_firmware::Tick;

/// The mps2-an386 CPU clock (QEMU models it at this rate too).
pub const CPU_HZ: u32 = 25_000_000;
/// Ticks per second.
pub const TICK_HZ: u32 = 100;

static TICKS: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick interrupting at [`TICK_HZ`].
pub fn start(mut syst: SYST) {
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(CPU_HZ / TICK_HZ - 1);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

/// Ticks since [`start`] (wrapping).
pub fn now() -> Tick {
    Tick(TICKS.load(Ordering::Relaxed))
}

#[exception]
fn SysTick() {
    TICKS.fetch_add(1, Ordering::Relaxed);
}

defmt::timestamp!("tick {=u32}", now().0);
