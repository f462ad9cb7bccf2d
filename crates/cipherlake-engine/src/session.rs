//! The DataFusion session every cipherlake command runs SQL in.

use std::path::PathBuf;
use std::sync::Arc;

use cipherlake_crypto::key_material::KmsClient;
use datafusion::common::config::TableOptions;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::disk_manager::{
    DEFAULT_MAX_TEMP_DIRECTORY_SIZE, DiskManagerBuilder, DiskManagerMode,
};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake::delta_datafusion::DeltaTableFactory;

use crate::encryption::{FACTORY_ID, KmsEncryptionFactory};
use crate::spill::{EncryptedTempFileFactory, SpillLimit};
use crate::stores::{CloudStores, StoreConfig};

/// Options for a new session.
#[derive(Clone)]
pub struct SessionOptions {
    /// Parallelism of scans, joins and aggregations (defaults to the number of cores).
    pub target_partitions: usize,
    /// The KMS that unwraps (reading) and wraps (writing) the data keys of encrypted Parquet
    /// files; without one, encrypted files cannot be read or written.
    pub kms: Option<Arc<dyn KmsClient>>,
    /// Memory limit in bytes for query execution (spilling beyond it); unbounded when `None`.
    pub memory_limit: Option<usize>,
    /// Directory in which the session's encrypted spill directory is created (the operating
    /// system's temporary directory when `None`).
    pub spill_dir: Option<PathBuf>,
    /// The most bytes the encrypted spill files may hold on disk at once (DataFusion's
    /// `max_temp_directory_size`, 100 GiB by default); `SET
    /// datafusion.runtime.max_temp_directory_size` changes it for one session.
    pub spill_limit: u64,
    /// Settings of the Azure and S3 stores behind `az://`, `abfss://`, `s3://` … table URLs.
    pub stores: StoreConfig,
}

impl std::fmt::Debug for SessionOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionOptions")
            .field("target_partitions", &self.target_partitions)
            .field("kms", &self.kms.as_ref().map(|_| "configured"))
            .field("memory_limit", &self.memory_limit)
            .field("spill_dir", &self.spill_dir)
            .field("spill_limit", &self.spill_limit)
            .field("stores", &self.stores)
            .finish()
    }
}

impl Default for SessionOptions {
    fn default() -> Self {
        Self {
            target_partitions: std::thread::available_parallelism().map_or(1, |n| n.get()),
            kms: None,
            memory_limit: None,
            spill_dir: None,
            spill_limit: DEFAULT_MAX_TEMP_DIRECTORY_SIZE,
            stores: StoreConfig::default(),
        }
    }
}

/// A session configured for cipherlake:
/// - identifiers keep their case, so the TLC schema's `VendorID`, `PULocationID` and
///   `Airport_fee` can be written unquoted as users of Spark and DuckDB do (function names and
///   keywords stay case-insensitive);
/// - `information_schema` is available;
/// - files and directories can be queried by path, as in DuckDB: `SELECT … FROM 'dir/'`;
/// - `CREATE EXTERNAL TABLE … STORED AS DELTATABLE` opens Delta Lake tables;
/// - encrypted Parquet is read with no options (keys come from each file's key metadata
///   through [`SessionOptions::kms`]) and written with the factory options of
///   [`crate::encryption`];
/// - every spill file is encrypted under a random in-memory key ([`crate::spill`]), and SQL
///   cannot change that or lift the operator's limits ([`crate::runtime_settings`]);
/// - Azure and S3 table URLs open their stores from [`SessionOptions::stores`]
///   ([`crate::stores`]).
pub fn new_session(options: &SessionOptions) -> SessionContext {
    SessionContext::new_with_state(session_builder(options).build()).enable_url_table()
}

/// The state builder behind [`new_session`], for sessions that add to it (the distributed
/// driver adds its planner, worker list and channels).
pub fn session_builder(options: &SessionOptions) -> SessionStateBuilder {
    let mut config = SessionConfig::new()
        .with_information_schema(true)
        .with_target_partitions(options.target_partitions.max(1));
    config.options_mut().sql_parser.enable_ident_normalization = false;
    let mut table_options = TableOptions::default_from_session_config(config.options());
    table_options.parquet.crypto.factory_id = Some(FACTORY_ID.to_owned());
    let spill_limit = Arc::new(SpillLimit::new(options.spill_limit));
    let config = config.with_extension(Arc::clone(&spill_limit));
    SessionStateBuilder::new()
        .with_config(config)
        .with_runtime_env(runtime(options, spill_limit))
        .with_table_options(table_options)
        .with_default_features()
        .with_table_factory("DELTATABLE".to_string(), Arc::new(DeltaTableFactory {}))
}

/// The runtime of a session, shared by the driver's session and by a worker's tasks: the
/// object stores of [`SessionOptions::stores`], encrypted spill files, the memory limit, and
/// the encryption factory [`FACTORY_ID`] on [`SessionOptions::kms`].
pub fn build_runtime(options: &SessionOptions) -> Arc<RuntimeEnv> {
    runtime(options, Arc::new(SpillLimit::new(options.spill_limit)))
}

/// [`build_runtime`] with spill files counted against `spill_limit`.
fn runtime(options: &SessionOptions, spill_limit: Arc<SpillLimit>) -> Arc<RuntimeEnv> {
    let spill = DiskManagerBuilder::default().with_mode(DiskManagerMode::Custom(Arc::new(
        EncryptedTempFileFactory::new(options.spill_dir.clone(), spill_limit),
    )));
    let mut runtime = RuntimeEnvBuilder::new()
        .with_disk_manager_builder(spill)
        .with_object_store_registry(Arc::new(CloudStores::new(options.stores.clone())));
    if let Some(limit) = options.memory_limit {
        runtime = runtime.with_memory_limit(limit, 1.0);
    }
    let runtime = runtime
        .build_arc()
        .expect("a runtime with a custom disk manager and a fixed memory pool always builds");
    runtime.register_parquet_encryption_factory(
        FACTORY_ID,
        Arc::new(KmsEncryptionFactory::new(options.kms.clone())),
    );
    runtime
}
