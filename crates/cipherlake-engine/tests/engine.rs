//! Integration tests of the engine crate (one test binary; modules by topic).

mod engine {
    pub mod datagen;
    pub mod sql;
    pub mod support;
}
