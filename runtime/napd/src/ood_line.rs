//! The OOD line: a digital output the sensor side can wire straight to a reject input, raised
//! for out-of-distribution frames.
//!
//! It is driven through embedded-hal's [`OutputPin`], so any pin works: on Linux a gpio-cdev
//! line ([`open_gpio_cdev`]), in tests a mock. Two modes: [`LineMode::Level`] holds the line high
//! while the latest verdict is OOD; [`LineMode::Pulse`] raises it for a fixed time per OOD
//! verdict (extended by OOD verdicts that arrive meanwhile), for inputs that count edges.

use embedded_hal::digital::OutputPin;
use std::fmt::Debug;
use std::str::FromStr;
use std::time::{Duration, Instant};

/// How OOD verdicts show on the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LineMode {
    /// High while the latest verdict is OOD, low otherwise.
    Level,
    /// High for this long after each OOD verdict.
    Pulse(Duration),
}

impl FromStr for LineMode {
    type Err = String;

    /// `level`, or `pulse:MS` (milliseconds, 1..=60000).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s == "level" {
            return Ok(LineMode::Level);
        }
        if let Some(ms) = s.strip_prefix("pulse:") {
            return match ms.parse::<u64>() {
                Ok(ms @ 1..=60_000) => Ok(LineMode::Pulse(Duration::from_millis(ms))),
                _ => Err(format!(
                    "pulse width {ms:?}: expected milliseconds in 1..=60000"
                )),
            };
        }
        Err(format!(
            "OOD line mode {s:?}: expected `level` or `pulse:MS`"
        ))
    }
}

/// An output pin driven by verdicts.
pub struct OodLine<P> {
    pin: P,
    mode: LineMode,
    high: bool,
    low_at: Option<Instant>,
}

impl<P: OutputPin> OodLine<P> {
    /// Takes the pin and drives it low (no OOD frame seen yet).
    pub fn new(mut pin: P, mode: LineMode) -> Result<Self, P::Error> {
        pin.set_low()?;
        Ok(OodLine {
            pin,
            mode,
            high: false,
            low_at: None,
        })
    }

    fn set(&mut self, high: bool) -> Result<(), P::Error> {
        if high != self.high {
            if high {
                self.pin.set_high()?;
            } else {
                self.pin.set_low()?;
            }
            self.high = high;
        }
        Ok(())
    }

    /// Shows one verdict, received at `now`.
    pub fn verdict(&mut self, ood: bool, now: Instant) -> Result<(), P::Error> {
        match self.mode {
            LineMode::Level => self.set(ood),
            LineMode::Pulse(width) => {
                if ood {
                    self.low_at = Some(now + width);
                    self.set(true)
                } else {
                    self.poll(now)
                }
            }
        }
    }

    /// Ends a pulse whose time is up. Call it at least by [`OodLine::deadline`].
    pub fn poll(&mut self, now: Instant) -> Result<(), P::Error> {
        if let Some(t) = self.low_at
            && now >= t
        {
            self.low_at = None;
            self.set(false)?;
        }
        Ok(())
    }

    /// When the current pulse must end, if one is running.
    pub fn deadline(&self) -> Option<Instant> {
        self.low_at
    }

    /// Whether the line is high now.
    pub fn is_high(&self) -> bool {
        self.high
    }

    /// Drives the line low for good (shutdown) and gives the pin back.
    pub fn release(mut self) -> Result<P, P::Error> {
        self.low_at = None;
        self.set(false)?;
        Ok(self.pin)
    }
}

/// An [`OodLine`] over any pin, with errors turned into text: what the daemon holds.
pub trait OodOutput: Send {
    /// See [`OodLine::verdict`].
    fn verdict(&mut self, ood: bool, now: Instant) -> Result<(), String>;
    /// See [`OodLine::poll`].
    fn poll(&mut self, now: Instant) -> Result<(), String>;
    /// See [`OodLine::deadline`].
    fn deadline(&self) -> Option<Instant>;
    /// Drives the line low for good.
    fn shutdown(&mut self) -> Result<(), String>;
}

impl<P> OodOutput for OodLine<P>
where
    P: OutputPin + Send,
    P::Error: Debug,
{
    fn verdict(&mut self, ood: bool, now: Instant) -> Result<(), String> {
        OodLine::verdict(self, ood, now).map_err(|e| format!("OOD line: {e:?}"))
    }

    fn poll(&mut self, now: Instant) -> Result<(), String> {
        OodLine::poll(self, now).map_err(|e| format!("OOD line: {e:?}"))
    }

    fn deadline(&self) -> Option<Instant> {
        OodLine::deadline(self)
    }

    fn shutdown(&mut self) -> Result<(), String> {
        self.low_at = None;
        self.set(false).map_err(|e| format!("OOD line: {e:?}"))
    }
}

/// A gpio-cdev line given as `CHIP:LINE`: `gpiochip0:17`, `/dev/gpiochip0:17`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GpioSpec {
    /// The character device, e.g. `/dev/gpiochip0`.
    pub chip: String,
    /// The line offset on that chip.
    pub line: u32,
}

impl FromStr for GpioSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (chip, line) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("OOD GPIO {s:?}: expected CHIP:LINE, e.g. gpiochip0:17"))?;
        let line = line
            .parse::<u32>()
            .map_err(|_| format!("OOD GPIO {s:?}: line {line:?} is not a number"))?;
        if chip.is_empty() {
            return Err(format!("OOD GPIO {s:?}: empty chip name"));
        }
        let chip = if chip.starts_with('/') {
            chip.to_string()
        } else {
            format!("/dev/{chip}")
        };
        Ok(GpioSpec { chip, line })
    }
}

/// Requests a gpio-cdev line as an output, initially low, labelled `napd`.
#[cfg(target_os = "linux")]
pub fn open_gpio_cdev(
    spec: &GpioSpec,
    mode: LineMode,
) -> Result<OodLine<linux_embedded_hal::CdevPin>, String> {
    use linux_embedded_hal::gpio_cdev::{Chip, LineRequestFlags};
    let fail = |e: &dyn std::fmt::Display| format!("OOD GPIO {}:{}: {e}", spec.chip, spec.line);
    let mut chip = Chip::new(&spec.chip).map_err(|e| fail(&e))?;
    let handle = chip
        .get_line(spec.line)
        .and_then(|l| l.request(LineRequestFlags::OUTPUT, 0, "napd"))
        .map_err(|e| fail(&e))?;
    let pin = linux_embedded_hal::CdevPin::new(handle).map_err(|e| fail(&e))?;
    OodLine::new(pin, mode).map_err(|e| fail(&format!("{e:?}")))
}

/// gpio-cdev exists on Linux only.
#[cfg(not(target_os = "linux"))]
pub fn open_gpio_cdev(spec: &GpioSpec, _mode: LineMode) -> Result<OodLine<NeverPin>, String> {
    Err(format!(
        "OOD GPIO {}:{}: gpio-cdev lines exist on Linux only",
        spec.chip, spec.line
    ))
}

/// The pin type of [`open_gpio_cdev`] off Linux, where it never succeeds.
#[cfg(not(target_os = "linux"))]
pub enum NeverPin {}

#[cfg(not(target_os = "linux"))]
impl embedded_hal::digital::ErrorType for NeverPin {
    type Error = core::convert::Infallible;
}

#[cfg(not(target_os = "linux"))]
impl OutputPin for NeverPin {
    fn set_low(&mut self) -> Result<(), Self::Error> {
        match *self {}
    }
    fn set_high(&mut self) -> Result<(), Self::Error> {
        match *self {}
    }
}
