//! Running the binary.

use std::process::{Command, Output};

/// Runs `cipherlake ARGS`.
pub fn cipherlake(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_cipherlake"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs")
}

/// Runs and asserts success; returns stdout.
pub fn ok(args: &[&str]) -> String {
    let out = cipherlake(args);
    assert!(
        out.status.success(),
        "cipherlake {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

/// Runs and asserts a clean failure: exit 1, one `error:` line naming the problem, no panic.
pub fn fails(args: &[&str]) -> String {
    let out = cipherlake(args);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(1), "cipherlake {args:?}: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert_eq!(
        stderr.trim_end().lines().count(),
        1,
        "one line expected: {stderr}"
    );
    assert!(
        !stderr.contains("panicked") && !stderr.contains("internal error"),
        "{stderr}"
    );
    stderr
}
