//! How a driver or a worker reaches a worker: one HTTP/2 channel per worker URL, dialed over
//! TCP and TLS 1.3 with this workload's certificate ([`crate::tls`]), with keepalives so a dead
//! peer is noticed; every error names the worker it came from.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use async_trait::async_trait;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::common::{DataFusionError, Result};
use datafusion::execution::TaskContext;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion_distributed::{
    ChannelResolver, CoordinatorToWorkerMsg, ExecuteTaskRequest, GetWorkerInfoRequest,
    GetWorkerInfoResponse, SetPlanRequest, WorkerChannel, WorkerToCoordinatorMsg, grpc,
};
use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use http::HeaderMap;
use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use rustls::pki_types::ServerName;
use tonic::transport::Endpoint;
use url::Url;

use crate::runtime::SpawnOn;
use crate::tls::WORKER_SERVER_NAME;

/// Time allowed for the TCP connection and the TLS handshake to a worker. Generous: a worker
/// whose threads are saturated by query work answers handshakes late, not never.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);
/// HTTP/2 pings on idle and busy connections, so a worker that vanished without closing its
/// connection (a crashed host, a partition) fails the query instead of hanging it.
pub(crate) const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
/// How long a ping may go unanswered before the connection is declared dead.
pub(crate) const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Resolves worker URLs (`https://host:port`) to mTLS channels, one cached per URL; a channel
/// that fails is dropped so the next query dials afresh (a restarted worker is picked up).
#[derive(Clone)]
pub struct MtlsChannelResolver {
    tls: Arc<ArcSwap<ClientConfig>>,
    /// Where channels' connection tasks run: the runtime that made the resolver, not the
    /// query runtime a worker first uses a channel from. None when made outside a runtime:
    /// connections then run where they are first dialed.
    connections: Option<SpawnOn>,
    channels: Arc<Mutex<HashMap<Url, grpc::BoxCloneSyncChannel>>>,
}

impl MtlsChannelResolver {
    /// A resolver dialing with `tls` (see [`crate::tls::Identity::client_config`]); its
    /// connections run on the current runtime, if any.
    pub fn new(tls: Arc<ClientConfig>) -> Self {
        MtlsChannelResolver {
            tls: Arc::new(ArcSwap::new(tls)),
            connections: tokio::runtime::Handle::try_current().ok().map(SpawnOn),
            channels: Arc::default(),
        }
    }

    /// Replaces the TLS configuration (a renewed certificate); new connections use it.
    pub fn set_tls(&self, tls: Arc<ClientConfig>) {
        self.tls.store(tls);
        self.channels_lock().clear();
    }

    fn channels_lock(&self) -> std::sync::MutexGuard<'_, HashMap<Url, grpc::BoxCloneSyncChannel>> {
        self.channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn forget(&self, url: &Url) {
        self.channels_lock().remove(url);
    }

    fn channel(&self, url: &Url) -> Result<grpc::BoxCloneSyncChannel> {
        // Held while a missing channel is made (cheap: it connects lazily), so concurrent
        // callers share one.
        let mut channels = self.channels_lock();
        if let Some(channel) = channels.get(url) {
            return Ok(channel.clone());
        }
        let (host, port) = match (url.host_str(), url.port_or_known_default()) {
            (Some(host), Some(port)) if url.scheme() == "https" => (host.to_owned(), port),
            _ => {
                return Err(DataFusionError::Configuration(format!(
                    "worker URL {url} is not https://HOST:PORT"
                )));
            }
        };
        // tonic sees plain http://: TLS happens inside the connector below.
        let mut endpoint = Endpoint::from_shared(format!("http://{host}:{port}"))
            .map_err(|e| DataFusionError::Configuration(format!("worker URL {url}: {e}")))?
            .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
            .keep_alive_timeout(KEEPALIVE_TIMEOUT)
            .keep_alive_while_idle(true)
            .tcp_nodelay(true);
        if let Some(connections) = &self.connections {
            endpoint = endpoint.executor(connections.clone());
        }
        let tls = Arc::clone(&self.tls);
        let address = format!("{host}:{port}");
        let connector = tower::service_fn(move |_: http::Uri| {
            let tls = tls.load_full();
            let address = address.clone();
            async move {
                let dial = async {
                    let tcp = tokio::net::TcpStream::connect(&address).await?;
                    tcp.set_nodelay(true)?;
                    let name =
                        ServerName::try_from(WORKER_SERVER_NAME).map_err(std::io::Error::other)?;
                    tokio_rustls::TlsConnector::from(tls)
                        .connect(name, tcp)
                        .await
                };
                match tokio::time::timeout(CONNECT_TIMEOUT, dial).await {
                    Ok(Ok(stream)) => Ok(TokioIo::new(stream)),
                    Ok(Err(e)) => Err(e),
                    Err(_) => Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        format!("no TLS connection within {CONNECT_TIMEOUT:?}"),
                    )),
                }
            }
        });
        let channel =
            grpc::BoxCloneSyncChannel::new(endpoint.connect_with_connector_lazy(connector));
        channels.insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

#[async_trait]
impl ChannelResolver for MtlsChannelResolver {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>> {
        let inner = grpc::create_worker_client(self.channel(url)?);
        Ok(Box::new(NamedWorkerChannel {
            url: url.clone(),
            inner,
            resolver: self.clone(),
        }))
    }
}

/// A worker client whose errors, including those inside result streams, name the worker.
struct NamedWorkerChannel {
    url: Url,
    inner: Box<dyn WorkerChannel>,
    resolver: MtlsChannelResolver,
}

/// Wraps `error` with the worker URL and forgets the worker's channel.
fn name_worker(
    url: &Url,
    resolver: &MtlsChannelResolver,
    error: DataFusionError,
) -> DataFusionError {
    resolver.forget(url);
    DataFusionError::Context(format!("worker {url}"), Box::new(error))
}

#[async_trait]
impl WorkerChannel for NamedWorkerChannel {
    async fn coordinator_channel(
        &mut self,
        headers: HeaderMap,
        set_plan_request: SetPlanRequest,
        c2w_stream: BoxStream<'static, CoordinatorToWorkerMsg>,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<BoxStream<'static, Result<WorkerToCoordinatorMsg>>> {
        let (url, resolver) = (self.url.clone(), self.resolver.clone());
        let stream = self
            .inner
            .coordinator_channel(headers, set_plan_request, c2w_stream, metrics, task_ctx)
            .await
            .map_err(|e| name_worker(&url, &resolver, e))?;
        Ok(stream
            .map_err(move |e| name_worker(&url, &resolver, e))
            .boxed())
    }

    async fn execute_task(
        &mut self,
        headers: HeaderMap,
        request: ExecuteTaskRequest,
        metrics: ExecutionPlanMetricsSet,
        task_ctx: &Arc<TaskContext>,
    ) -> Result<Vec<BoxStream<'static, Result<RecordBatch>>>> {
        let streams = self
            .inner
            .execute_task(headers, request, metrics, task_ctx)
            .await
            .map_err(|e| name_worker(&self.url, &self.resolver, e))?;
        Ok(streams
            .into_iter()
            .map(|stream| {
                let (url, resolver) = (self.url.clone(), self.resolver.clone());
                stream
                    .map_err(move |e| name_worker(&url, &resolver, e))
                    .boxed()
            })
            .collect())
    }

    async fn get_worker_info(
        &mut self,
        request: GetWorkerInfoRequest,
    ) -> Result<GetWorkerInfoResponse> {
        self.inner
            .get_worker_info(request)
            .await
            .map_err(|e| name_worker(&self.url, &self.resolver, e))
    }
}
