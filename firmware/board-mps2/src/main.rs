//! The sensor controller on QEMU mps2-an386.
//!
//! UART0 is the link to the runtime, LED0 the reject line, LED1 the fault line, SysTick the
//! 100 Hz clock. Every line edge is also printed on semihosting stdout (the LEDs are invisible in
//! an emulator), as one line per event:
//!
//! ```text
//! tick=<t> reject=<0|1>
//! tick=<t> fault=<0|1> state=<safe|armed|fault> last_alive=<t|none> timeout=<ticks>
//! summary frames=.. ood=.. rejects=.. crc_errors=.. malformed=.. version_errors=.. seq_gaps=.. duplicates=.. restarts=.. link_errors=.. tx_dropped=.. disarms=.. state=..
//! ```
//!
//! A real controller runs forever. In the emulator there is no one to switch it off, so this
//! binary ends the run once the link has been silent for [`END_AFTER_SILENCE`] ticks after having
//! heard something: it prints the summary and exits through semihosting, with status 0 unless the
//! controller itself failed.
#![no_std]
#![no_main]

use cortex_m_rt::entry;
use nap_board_mps2::clock;
use nap_board_mps2::leds::{FAULT_LED, Led, REJECT_LED};
use nap_board_mps2::semihost::{self, println};
use nap_board_mps2::uart::CmsdkUart;
use nap_core::protocol::ControllerState;
use nap_firmware::{Config, Controller, Link, Tick};

/// 500 ms heartbeat timeout, 50 ms reject pulses (at the 100 Hz tick).
const CONFIG: Config = Config::DEFAULT_100HZ;

/// Emulator runs only: end the run after 3 s of silence.
const END_AFTER_SILENCE: u32 = 3 * clock::TICK_HZ;

#[entry]
fn main() -> ! {
    let Some(cp) = cortex_m::Peripherals::take() else {
        // Only `main` takes them, once; if that ever fails there is nothing safe to do but stop.
        semihost::exit(false)
    };
    clock::start(cp.SYST);
    // SAFETY: this is the only code that touches UART0 and the two LED bits.
    let (uart, reject, fault) = unsafe {
        (
            CmsdkUart::uart0(),
            Led::new(REJECT_LED),
            Led::new(FAULT_LED),
        )
    };

    let mut ctrl = Controller::new(CONFIG, reject, fault);
    let mut link = Link::new(uart);
    defmt::info!("nap controller on mps2-an386, config {}", CONFIG);
    println!(
        "boot fault=1 state=safe timeout={}",
        CONFIG.heartbeat_timeout
    );

    let mut shown = Shown::of(&ctrl);
    let mut last_heard: Option<Tick> = None;
    let mut frames_seen = 0;
    loop {
        let now = clock::now();
        link.poll(&mut ctrl, now);
        shown.report_changes(&ctrl, now);

        let c = ctrl.counters();
        let heard = c.frames.wrapping_add(c.frame_errors());
        if heard != frames_seen {
            frames_seen = heard;
            last_heard = Some(now);
        }
        if let Some(t) = last_heard
            && now.since(t) > END_AFTER_SILENCE
        {
            summary(&ctrl);
            semihost::exit(ctrl.state() != ControllerState::Fault);
        }
    }
}

/// The line levels last printed.
struct Shown {
    reject: bool,
    fault: bool,
}

impl Shown {
    fn of<R, F>(ctrl: &Controller<R, F>) -> Self
    where
        R: embedded_hal::digital::OutputPin,
        F: embedded_hal::digital::OutputPin,
    {
        Self {
            reject: ctrl.lines().reject_high(),
            fault: ctrl.lines().fault_high(),
        }
    }

    /// Prints every line that changed since the last call.
    fn report_changes<R, F>(&mut self, ctrl: &Controller<R, F>, now: Tick)
    where
        R: embedded_hal::digital::OutputPin,
        F: embedded_hal::digital::OutputPin,
    {
        let lines = ctrl.lines();
        if lines.reject_high() != self.reject {
            self.reject = lines.reject_high();
            println!("tick={} reject={}", now.0, u8::from(self.reject));
        }
        if lines.fault_high() != self.fault {
            self.fault = lines.fault_high();
            match ctrl.last_alive() {
                Some(t) => println!(
                    "tick={} fault={} state={} last_alive={} timeout={}",
                    now.0,
                    u8::from(self.fault),
                    state_name(ctrl.state()),
                    t.0,
                    ctrl.config().heartbeat_timeout
                ),
                None => println!(
                    "tick={} fault={} state={} last_alive=none timeout={}",
                    now.0,
                    u8::from(self.fault),
                    state_name(ctrl.state()),
                    ctrl.config().heartbeat_timeout
                ),
            }
        }
    }
}

fn summary<R, F>(ctrl: &Controller<R, F>)
where
    R: embedded_hal::digital::OutputPin,
    F: embedded_hal::digital::OutputPin,
{
    let c = ctrl.counters();
    defmt::info!("end of run: {}", c);
    println!(
        "summary frames={} ood={} rejects={} crc_errors={} malformed={} version_errors={} seq_gaps={} duplicates={} restarts={} link_errors={} tx_dropped={} disarms={} state={}",
        c.frames,
        c.ood,
        c.rejects,
        c.crc_errors,
        c.malformed,
        c.version_errors,
        c.seq_gaps,
        c.duplicates,
        c.restarts,
        c.link_errors,
        c.tx_dropped,
        c.disarms,
        state_name(ctrl.state())
    );
}

fn state_name(s: ControllerState) -> &'static str {
    match s {
        ControllerState::Safe => "safe",
        ControllerState::Armed => "armed",
        ControllerState::Fault => "fault",
    }
}
