//! The driver's side of a distributed run: a session whose physical plans are split into
//! stages by datafusion-distributed and whose stages run on the workers of a [`WorkerList`],
//! reached over mTLS.

use std::sync::Arc;

use arc_swap::ArcSwap;
use cipherlake_engine::session::{SessionOptions, session_builder};
use datafusion::common::DataFusionError;
use datafusion::prelude::SessionContext;
use datafusion_distributed::{
    DistributedConfig, DistributedExt, SessionStateBuilderExt, WorkerResolver,
};
use url::Url;

use crate::ClusterError;
use crate::channel::MtlsChannelResolver;
use crate::tls::Identity;

/// The workers a driver distributes to: a fixed list (`--workers`), or one kept current from
/// the CAS ([`crate::registry::follow_workers`]).
#[derive(Clone, Default)]
pub struct WorkerList(Arc<ArcSwap<Vec<Url>>>);

impl std::fmt::Debug for WorkerList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.urls().iter().map(Url::as_str))
            .finish()
    }
}

impl WorkerList {
    /// A list of `urls`.
    pub fn new(urls: Vec<Url>) -> Self {
        WorkerList(Arc::new(ArcSwap::from_pointee(urls)))
    }

    /// The current workers.
    pub fn urls(&self) -> Arc<Vec<Url>> {
        self.0.load_full()
    }

    /// Replaces the workers (later queries use the new list).
    pub fn set(&self, urls: Vec<Url>) {
        self.0.store(Arc::new(urls));
    }
}

impl WorkerResolver for WorkerList {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        let urls = self.urls();
        if urls.is_empty() {
            return Err(DataFusionError::Execution(
                "no workers: none given, or none of the policy's workers is registered and live"
                    .into(),
            ));
        }
        Ok(urls.to_vec())
    }
}

/// How a driver distributes.
#[derive(Debug, Clone)]
pub struct DriverOptions {
    /// The driver's certificate, issued by the CAS after attestation.
    pub identity: Identity,
    /// The workers.
    pub workers: WorkerList,
    /// The services of the policy a worker's certificate may name.
    pub worker_services: Vec<String>,
    /// Parquet bytes per scan task (smaller spreads small tables over more workers);
    /// datafusion-distributed's default (16 MiB) when `None`.
    pub bytes_per_partition: Option<usize>,
}

/// A single-process session (as [`cipherlake_engine::session::new_session`]) that accepts the
/// distributed settings (`SET distributed.…`) and ignores them, so one job file runs in one
/// process and on workers alike.
pub fn local_session(session: &SessionOptions) -> SessionContext {
    let mut state = session_builder(session).build();
    state
        .config_mut()
        .options_mut()
        .extensions
        .insert(DistributedConfig::default());
    SessionContext::new_with_state(state).enable_url_table()
}

/// A session like [`cipherlake_engine::session::new_session`] whose queries run distributed.
pub fn distributed_session(
    session: &SessionOptions,
    driver: &DriverOptions,
) -> Result<SessionContext, ClusterError> {
    let identity = &driver.identity;
    let channels = MtlsChannelResolver::new(
        identity.client_config(identity.peer_check(&driver.worker_services))?,
    );
    let mut builder = session_builder(session)
        .with_distributed_worker_resolver(driver.workers.clone())
        .with_distributed_channel_resolver(channels)
        .with_distributed_planner();
    if let Some(bytes) = driver.bytes_per_partition {
        builder = builder
            .with_distributed_file_scan_config_bytes_per_partition(bytes.max(1))
            .map_err(|e| ClusterError::Driver(e.to_string()))?;
    }
    Ok(SessionContext::new_with_state(builder.build()).enable_url_table())
}
