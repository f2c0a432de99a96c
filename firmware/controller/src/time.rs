//! Time as the caller's tick count.
//!
//! The library has no timer: the board passes the current tick to every call. Ticks wrap at
//! `u32::MAX`; all comparisons are wrapping differences, so they are right across the wrap as long
//! as the intervals compared stay below 2^31 ticks (about 248 days at 100 Hz).

/// A point in time, in ticks of the caller's monotonic clock (wrapping).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Tick(pub u32);

impl Tick {
    /// Ticks elapsed from `earlier` to `self`, across the wrap.
    pub const fn since(self, earlier: Tick) -> u32 {
        self.0.wrapping_sub(earlier.0)
    }

    /// The tick `ticks` after `self`.
    pub const fn after(self, ticks: u32) -> Tick {
        Tick(self.0.wrapping_add(ticks))
    }

    /// `true` once `self` has reached or passed `deadline` (wrapping, within 2^31 ticks).
    pub const fn reached(self, deadline: Tick) -> bool {
        self.since(deadline) < 1 << 31
    }
}
