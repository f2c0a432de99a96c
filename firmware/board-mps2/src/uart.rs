//! CMSDK APB UART0 of the mps2-an386 as an embedded-io port.
//!
//! Register layout (Arm CMSDK technical reference): DATA at +0x00, STATE at +0x04 (bit 0 TX
//! buffer full, bit 1 RX buffer full, bit 2 TX overrun, bit 3 RX overrun; overrun bits are
//! cleared by writing 1), CTRL at +0x08 (bit 0 TX enable, bit 1 RX enable), BAUDDIV at +0x10
//! (at least 16). The receiver holds one byte: a byte arriving while it is full is lost and sets
//! the RX overrun bit, which this port reports as a read error so the controller drops the frame
//! in progress.

use core::ptr::{read_volatile, write_volatile};

use embedded_io::{ErrorKind, ErrorType, Read, ReadReady, Write, WriteReady};

/// Base address of UART0 (the one QEMU's `-serial` option connects first).
pub const UART0_BASE: usize = 0x4000_4000;

const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const STATE_RX_OVERRUN: u32 = 1 << 3;
const CTRL_TX_EN: u32 = 1 << 0;
const CTRL_RX_EN: u32 = 1 << 1;

/// Baud divisor for 115200 baud from the board's 25 MHz peripheral clock. QEMU ignores the rate
/// (its serial backend runs as fast as the host reads) but wants a divisor of at least 16.
pub const BAUDDIV_115200: u32 = 25_000_000 / 115_200;

/// One CMSDK UART, polled (no interrupts).
#[derive(Debug)]
pub struct CmsdkUart {
    base: usize,
}

impl CmsdkUart {
    /// Takes UART0, sets 115200 baud and enables transmitter and receiver.
    ///
    /// # Safety
    /// The caller must own UART0: no other `CmsdkUart` or code may touch its registers.
    pub unsafe fn uart0() -> Self {
        let uart = Self { base: UART0_BASE };
        uart.write_reg(BAUDDIV, BAUDDIV_115200);
        uart.write_reg(CTRL, CTRL_TX_EN | CTRL_RX_EN);
        uart
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `base` is a CMSDK UART this value owns (see `uart0`), and the offsets are
        // its registers: aligned, always mapped on this board.
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: as in `read_reg`.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Reads and clears a pending RX overrun.
    fn take_overrun(&mut self) -> bool {
        let overrun = self.read_reg(STATE) & STATE_RX_OVERRUN != 0;
        if overrun {
            self.write_reg(STATE, STATE_RX_OVERRUN);
        }
        overrun
    }
}

impl ErrorType for CmsdkUart {
    type Error = ErrorKind;
}

impl ReadReady for CmsdkUart {
    /// A byte is waiting, or an overrun is pending (which the next read reports).
    fn read_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(self.read_reg(STATE) & (STATE_RX_FULL | STATE_RX_OVERRUN) != 0)
    }
}

impl Read for CmsdkUart {
    /// Waits for one byte and returns it (the receiver holds one byte, so never more); an
    /// overrun since the last read is reported first, as `ErrorKind::Other`.
    fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
        let Some(slot) = buf.first_mut() else {
            return Ok(0);
        };
        loop {
            if self.take_overrun() {
                return Err(ErrorKind::Other);
            }
            if self.read_reg(STATE) & STATE_RX_FULL != 0 {
                // Only the low 8 bits are data.
                *slot = (self.read_reg(DATA) & 0xff) as u8;
                return Ok(1);
            }
        }
    }
}

impl WriteReady for CmsdkUart {
    fn write_ready(&mut self) -> Result<bool, ErrorKind> {
        Ok(self.read_reg(STATE) & STATE_TX_FULL == 0)
    }
}

impl Write for CmsdkUart {
    /// Waits until the transmit buffer has room, then writes one byte.
    fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
        let Some(&byte) = buf.first() else {
            return Ok(0);
        };
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
        self.write_reg(DATA, u32::from(byte));
        Ok(1)
    }

    /// Bytes leave as soon as they are written; nothing is buffered here.
    fn flush(&mut self) -> Result<(), ErrorKind> {
        Ok(())
    }
}
