//! The DataFusion session every cipherlake command runs SQL in.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::DeltaTableFactory;

/// Options for a new session.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Parallelism of scans, joins and aggregations (defaults to the number of cores).
    pub target_partitions: usize,
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism().map_or(1, |n| n.get()),
        }
    }
}

/// A session configured for cipherlake:
/// - identifiers keep their case, so the TLC schema's `VendorID`, `PULocationID` and
///   `Airport_fee` can be written unquoted as users of Spark and DuckDB do (function names and
///   keywords stay case-insensitive);
/// - `information_schema` is available;
/// - files and directories can be queried by path, as in DuckDB: `SELECT … FROM 'dir/'`;
/// - `CREATE EXTERNAL TABLE … STORED AS DELTATABLE` opens Delta Lake tables.
pub fn new_session(options: &SessionOptions) -> SessionContext {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(options.target_partitions.max(1));
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features()
        .with_table_factory("DELTATABLE".to_string(), Arc::new(DeltaTableFactory {}))
        .build();
    SessionContext::new_with_state(state).enable_url_table()
}
