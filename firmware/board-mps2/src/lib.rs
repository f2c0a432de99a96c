//! Board support for QEMU's mps2-an386 (Cortex-M4): what the controller binary and the on-target
//! tests share.
//!
//! - [`uart`]: the CMSDK APB UART0, as an embedded-io port (the link to the runtime).
//! - [`leds`]: the FPGAIO user LEDs, as embedded-hal output pins (the reject and fault lines).
//! - [`clock`]: a 100 Hz tick from SysTick.
//! - [`semihost`]: text output, the defmt logger and the exit code, all through semihosting.
//!
//! Addresses are from Arm's AN386 application note (the memory map QEMU implements).
#![no_std]

pub mod clock;
pub mod leds;
pub mod semihost;
pub mod uart;
