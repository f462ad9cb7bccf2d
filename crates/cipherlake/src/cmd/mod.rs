//! One module per subcommand. Each exposes `Args` (clap) and `run(args) -> anyhow::Result<()>`.

pub mod bench;
pub mod datagen;
mod count;
pub mod sql;
