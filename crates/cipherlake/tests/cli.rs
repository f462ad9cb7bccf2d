//! End-to-end tests of the `cipherlake` binary as users run it (one test binary; modules by
//! subcommand).

mod cli {
    pub mod basics;
    pub mod support;
}
