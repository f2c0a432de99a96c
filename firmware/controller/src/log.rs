//! Logging that compiles to defmt with the `defmt` feature and to nothing without it.
//!
//! Host tests build without the feature, so they link without a defmt global logger; the
//! arguments are still evaluated by reference in that case so that no variable turns "unused".

macro_rules! log_at {
    ($level:ident, $fmt:literal $(, $arg:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        defmt::$level!($fmt $(, $arg)*);
        #[cfg(not(feature = "defmt"))]
        {
            $( let _ = &$arg; )*
        }
    }};
}

macro_rules! debug {
    ($($t:tt)*) => { log_at!(debug, $($t)*) };
}

macro_rules! info {
    ($($t:tt)*) => { log_at!(info, $($t)*) };
}

macro_rules! warn {
    ($($t:tt)*) => { log_at!(warn, $($t)*) };
}
