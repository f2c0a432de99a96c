//! Real programs a test runs beside ours (openssl, a broker, a browser): found on PATH, or the
//! test skips with one printed line, except under CI (`CI=true`), where a missing tool fails.

use std::path::PathBuf;

/// The path of `tool` on PATH. `None` (after printing why the test skips) when it is missing
/// on a developer's machine; a panic when it is missing under CI.
pub fn require(tool: &str) -> Option<PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(tool))
            .find(|p| p.is_file())
    });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{tool} is not installed, and CI=true: CI must install it"
        );
        println!("skipped: {tool} is not installed");
    }
    found
}
