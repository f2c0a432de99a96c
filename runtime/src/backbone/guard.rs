//! tract is not written for hostile models: some malformed ONNX graphs make it panic (an index
//! into a map of names, an assertion on shapes) instead of returning an error. Every call that
//! hands it bundle bytes goes through [`guarded`], so one bad bundle gives an error naming the
//! cause instead of taking napd or napctl down.

use crate::panic_message;
use std::cell::Cell;
use std::panic::{self, AssertUnwindSafe};
use tract_onnx::prelude::*;
use tract_onnx::tract_core::internal::anyhow;

thread_local! {
    static INSIDE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f`, turning a panic inside it into an error that says what was being done.
pub(crate) fn guarded<T>(doing: &str, f: impl FnOnce() -> TractResult<T>) -> TractResult<T> {
    let outer = INSIDE.replace(true);
    let result = panic::catch_unwind(AssertUnwindSafe(f));
    INSIDE.set(outer);
    result.unwrap_or_else(|payload| {
        Err(anyhow!(
            "tract failed while {doing} (the model is malformed or uses something tract does not handle): {}",
            panic_message(payload.as_ref())
        ))
    })
}

/// Keeps the process's panic hook quiet for panics [`guarded`] turns into errors (their
/// message is in the error), and hands every other panic to the hook installed before. Call it
/// once at startup, after any hook of your own.
pub fn quiet_guarded_panics() {
    let previous = panic::take_hook();
    panic::set_hook(Box::new(move |info| {
        if !INSIDE.get() {
            previous(info);
        }
    }));
}
