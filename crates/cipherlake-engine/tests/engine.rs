//! Integration tests of the engine crate (one test binary; modules by topic).

mod engine {
    pub mod canary_watch;
    pub mod crypt;
    pub mod datagen;
    pub mod encryption;
    pub mod interop;
    pub mod spill;
    pub mod sql;
    pub mod sqldb;
    pub mod support;
}
