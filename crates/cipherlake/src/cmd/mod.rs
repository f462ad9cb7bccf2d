//! One module per subcommand. Each exposes `Args` (clap) and `run(args) -> anyhow::Result<()>`.

pub mod ae;
pub mod attest;
pub mod audit;
pub mod bench;
pub mod cas;
pub mod cluster;
mod count;
pub mod datagen;
pub mod demo;
mod encrypt;
pub mod evidence;
pub mod generated_policy;
pub mod las;
pub mod parquet;
pub mod policy;
pub mod probe;
pub mod run;
pub mod sql;
pub mod worker;
pub mod workload;
