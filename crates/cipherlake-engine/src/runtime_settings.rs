//! `SET` and `RESET` of `datafusion.runtime.…` in a cipherlake session.
//!
//! DataFusion applies a runtime setting by rebuilding the session's runtime environment. For
//! `temp_directory` and `max_temp_directory_size` it rebuilds the disk manager from its
//! defaults, which replaces the encrypted spill files ([`crate::spill`]) with plaintext ones;
//! `memory_limit` replaces the memory pool the operator sized. So a statement is looked at
//! before it runs ([`apply_runtime_setting`]):
//! - `max_temp_directory_size` sets the session's [`SpillLimit`], which the encrypted spill
//!   files honour;
//! - `temp_directory` and `memory_limit` are refused: the operator sets them (`--spill-dir`,
//!   `--memory-limit`), and SQL may neither move spill files nor lift the limit;
//! - the cache limits go to DataFusion, whose rebuild keeps the disk manager and memory pool;
//! - any other runtime name is refused.

use std::sync::Arc;

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::disk_manager::DEFAULT_MAX_TEMP_DIRECTORY_SIZE;
use datafusion::logical_expr::{LogicalPlan, Statement};
use datafusion::prelude::SessionContext;

use crate::spill::SpillLimit;

/// The prefix DataFusion routes to its runtime environment.
const RUNTIME_PREFIX: &str = "datafusion.runtime.";

/// Runtime settings DataFusion may apply itself: its rebuild of the runtime environment keeps
/// the disk manager and the memory pool for these.
const CACHE_SETTINGS: &[&str] = &[
    "metadata_cache_limit",
    "list_files_cache_limit",
    "list_files_cache_ttl",
    "file_statistics_cache_limit",
];

/// Applies `plan` if it sets or resets the spill limit and returns `true`, then the caller
/// must not execute it; refuses runtime settings that would weaken the session; returns
/// `false` for every other statement, which the caller executes as usual.
pub fn apply_runtime_setting(ctx: &SessionContext, plan: &LogicalPlan) -> Result<bool> {
    // The value is `None` for `RESET`.
    let (variable, value) = match plan {
        LogicalPlan::Statement(Statement::SetVariable(set)) => {
            (&set.variable, Some(set.value.as_str()))
        }
        LogicalPlan::Statement(Statement::ResetVariable(reset)) => (&reset.variable, None),
        _ => return Ok(false),
    };
    // Compared without case, so that no spelling slips past the check to DataFusion.
    let lowercase = variable.to_ascii_lowercase();
    let Some(key) = lowercase.strip_prefix(RUNTIME_PREFIX) else {
        return Ok(false);
    };
    let refused = |reason: &str| {
        Err(DataFusionError::Plan(format!(
            "{variable} cannot be changed from SQL in cipherlake: {reason}"
        )))
    };
    match key {
        "max_temp_directory_size" => {
            let max = match value {
                Some(value) => SessionContext::parse_capacity_limit(variable, value)? as u64,
                None => DEFAULT_MAX_TEMP_DIRECTORY_SIZE,
            };
            spill_limit(ctx)?.set_max(max);
            Ok(true)
        }
        "temp_directory" => {
            refused("spill files stay encrypted in the directory the operator chose (--spill-dir)")
        }
        "memory_limit" => refused("the operator sets the memory limit (--memory-limit)"),
        key if CACHE_SETTINGS.contains(&key) => Ok(false),
        _ => refused("not a runtime setting cipherlake lets SQL change"),
    }
}

/// The spill limit of a session made by [`crate::session::session_builder`].
fn spill_limit(ctx: &SessionContext) -> Result<Arc<SpillLimit>> {
    ctx.state()
        .config()
        .get_extension::<SpillLimit>()
        .ok_or_else(|| {
            DataFusionError::Plan(
                "this session has no encrypted spill limit to change (not a cipherlake session)"
                    .to_owned(),
            )
        })
}
