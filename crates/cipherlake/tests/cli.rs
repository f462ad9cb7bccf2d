//! End-to-end tests of the `cipherlake` binary as users run it (one test binary; modules by
//! subcommand).

mod cli {
    pub mod ae;
    pub mod ae_db;
    pub mod azure;
    pub mod basics;
    pub mod cas;
    pub mod demo;
    pub mod distributed;
    pub mod evidence;
    pub mod parquet;
    pub mod principals;
    pub mod run;
    pub mod support;
    pub mod testbed;
}
