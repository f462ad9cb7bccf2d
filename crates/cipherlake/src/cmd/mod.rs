//! One module per subcommand. Each exposes `Args` (clap) and `run(args) -> anyhow::Result<()>`.

pub mod bench;
mod count;
pub mod datagen;
pub mod sql;
