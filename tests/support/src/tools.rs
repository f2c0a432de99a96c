//! Real programs a test runs beside ours (openssl, a broker, a browser, numpy): found on PATH,
//! or the test skips with one printed line, except under CI (`CI=true`), where a missing tool
//! fails.

use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The path of `tool` on PATH. `None` (after printing why the test skips) when it is missing
/// on a developer's machine; a panic when it is missing under CI.
pub fn require(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        missing(&format!("{tool} is not installed"));
    }
    found
}

/// `python3` when it can import `module`; otherwise `None` or a panic, as [`require`].
pub fn require_python_module(module: &str) -> Option<PathBuf> {
    let python = require("python3")?;
    let imports = Command::new(&python)
        .args(["-c", &format!("import {module}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !imports {
        missing(&format!("python3 cannot import {module}"));
        return None;
    }
    Some(python)
}

fn missing(what: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{what}, and CI=true: CI must install it"
    );
    println!("skipped: {what}");
}
