//! The FPGAIO user LEDs of the mps2-an386 as embedded-hal output pins.
//!
//! FPGAIO LED0 register at 0x4002_8000: bit n drives LED n. On the emulated board the LEDs are
//! not visible, so the controller binary also logs every edge (see `main.rs`); the register
//! holds the real state and the on-target tests read it back.

use core::convert::Infallible;
use core::ptr::{read_volatile, write_volatile};

use embedded_hal::digital::{ErrorType, OutputPin, StatefulOutputPin};

/// Address of the FPGAIO LED0 register.
pub const FPGAIO_LED0: usize = 0x4002_8000;

/// LED of the reject line.
pub const REJECT_LED: u8 = 0;
/// LED of the fault line.
pub const FAULT_LED: u8 = 1;

/// One LED bit of the FPGAIO LED register.
#[derive(Debug)]
pub struct Led {
    bit: u8,
}

impl Led {
    /// LED `bit` (0 or 1 on this board).
    ///
    /// # Safety
    /// At most one `Led` per bit may exist; the register's other bits are preserved (each write
    /// is a read-modify-write, and nothing here runs from interrupts).
    pub unsafe fn new(bit: u8) -> Self {
        Self { bit: bit & 31 }
    }

    /// The whole LED register.
    pub fn register() -> u32 {
        // SAFETY: an always-mapped, aligned FPGAIO register; reading has no side effect.
        unsafe { read_volatile(FPGAIO_LED0 as *const u32) }
    }

    fn set(&mut self, on: bool) {
        let mask = 1 << self.bit;
        let value = Self::register();
        let value = if on { value | mask } else { value & !mask };
        // SAFETY: as in `register`; the read-modify-write is safe per `new`'s contract.
        unsafe { write_volatile(FPGAIO_LED0 as *mut u32, value) }
    }
}

impl ErrorType for Led {
    type Error = Infallible;
}

impl OutputPin for Led {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.set(false);
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        self.set(true);
        Ok(())
    }
}

impl StatefulOutputPin for Led {
    fn is_set_high(&mut self) -> Result<bool, Infallible> {
        Ok(Self::register() & (1 << self.bit) != 0)
    }

    fn is_set_low(&mut self) -> Result<bool, Infallible> {
        self.is_set_high().map(|high| !high)
    }
}
