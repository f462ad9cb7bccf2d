//! The cipherlake engine: DataFusion sessions for jobs, table registration (Parquet, CSV, Delta
//! Lake), SQL scripts, the synthetic taxi data generator and the taxi benchmark suite.

pub mod bench;
pub mod datagen;
pub mod encryption;
pub mod error;
pub mod job;
pub mod output;
pub mod runtime_settings;
pub mod script;
pub mod session;
pub mod spill;
pub mod sqldb;
pub mod stores;
pub mod tables;

pub use error::EngineError;
pub use session::new_session;
