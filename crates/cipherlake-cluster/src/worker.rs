//! A worker: serves DataFusion plan fragments (datafusion-distributed's worker service) over
//! mTLS. Its tasks run with one DataFusion runtime environment built from the worker's own
//! session options: its object stores, its encrypted spill files, its memory limit, and its
//! KMS (keys are unwrapped with the worker's certificate; nothing key-related arrives with a
//! plan). They compute on a Tokio runtime of their own, so the worker's connections keep
//! answering while they do ([`crate::runtime`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cipherlake_engine::encryption::FACTORY_ID;
use cipherlake_engine::session::{SessionOptions, build_runtime};
use datafusion_distributed::{
    DistributedExt, Worker, WorkerPlanRewriteHandler, WorkerQueryContext,
};
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Server;
use url::Url;

use crate::ClusterError;
use crate::channel::{KEEPALIVE_INTERVAL, KEEPALIVE_TIMEOUT, MtlsChannelResolver};
use crate::runtime::{OnRuntime, QueryRuntime};
use crate::scan_crypto::WorkerScanRewrite;
use crate::tls::Identity;

/// How long a client has to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once; further connections wait to be accepted, so clients that
/// never authenticate cannot make the worker spend unbounded CPU and memory.
const MAX_HANDSHAKES: usize = 128;

/// What a worker needs to serve.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// The runtime of its tasks (KMS, stores, spill directory, memory limit); the target
    /// partitions come with each plan.
    pub session: SessionOptions,
    /// Its certificate, issued by the CAS after attestation.
    pub identity: Identity,
    /// The services of its policy allowed to send it work or read its streams (the driver
    /// service, and the worker service for worker-to-worker streams).
    pub clients: Vec<String>,
    /// The services of its policy it reads streams from (other workers).
    pub workers: Vec<String>,
}

/// A running worker.
pub struct WorkerHandle {
    /// The address it listens on.
    pub addr: SocketAddr,
    tls: Arc<ArcSwap<ServerConfig>>,
    channels: MtlsChannelResolver,
    clients: Vec<String>,
    workers: Vec<String>,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<(), ClusterError>>,
    /// Declared last: dropped after the server task's handle, shut down without waiting.
    _query: QueryRuntime,
}

impl WorkerHandle {
    /// Switches to `identity` (a renewed certificate) for new connections, accepted and
    /// dialed; connections already open keep theirs.
    pub fn renew(&self, identity: &Identity) -> Result<(), ClusterError> {
        self.tls
            .store(identity.server_config(identity.peer_check(&self.clients))?);
        self.channels
            .set_tls(identity.client_config(identity.peer_check(&self.workers))?);
        tracing::info!(
            policy = identity.policy(),
            service = identity.service(),
            "worker certificate renewed"
        );
        Ok(())
    }

    /// The worker's URL on `host` (the address it can be reached at; the port is its own).
    pub fn url(&self, host: &str) -> Result<Url, ClusterError> {
        worker_url(host, self.addr.port())
    }

    /// Stops accepting, lets open connections finish, and waits.
    pub async fn stop(self) -> Result<(), ClusterError> {
        let _ = self.stop.send(true);
        self.task
            .await
            .map_err(|e| ClusterError::Worker(format!("the worker task failed: {e}")))?
    }
}

/// `https://host:port`; fails when `host` is not a host name or IP address.
pub fn worker_url(host: &str, port: u16) -> Result<Url, ClusterError> {
    let bracketed = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match Url::parse(&format!("https://{bracketed}:{port}")) {
        Ok(url) if url.host_str().is_some() && url.path() == "/" && url.username().is_empty() => {
            Ok(url)
        }
        _ => Err(ClusterError::Worker(format!(
            "{host:?} is not a host name or IP address"
        ))),
    }
}

/// Serves the worker service on `listener` until stopped: connections on the current
/// runtime, query work on a runtime of as many threads as the machine has cores.
pub fn serve(listener: TcpListener, options: WorkerOptions) -> Result<WorkerHandle, ClusterError> {
    let addr = listener
        .local_addr()
        .map_err(|e| ClusterError::Worker(format!("the listening address: {e}")))?;
    let identity = &options.identity;
    let tls = Arc::new(ArcSwap::new(
        identity.server_config(identity.peer_check(&options.clients))?,
    ));
    let channels =
        MtlsChannelResolver::new(identity.client_config(identity.peer_check(&options.workers))?);
    let worker = worker_service(&options.session, channels.clone())?;
    let threads = std::thread::available_parallelism().map_or(1, usize::from);
    let query = QueryRuntime::new(threads)?;
    let service = OnRuntime::new(worker.into_worker_server(), query.handle());
    let (stop, stopped) = watch::channel(false);
    let (incoming_tx, incoming) = mpsc::channel(64);
    tokio::spawn(accept_loop(
        listener,
        Arc::clone(&tls),
        incoming_tx,
        stopped.clone(),
    ));
    let mut signal = stopped;
    let task = tokio::spawn(async move {
        Server::builder()
            .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
            .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
            .add_service(service)
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), async move {
                let _ = signal.wait_for(|stop| *stop).await;
            })
            .await
            .map_err(|e| ClusterError::Worker(format!("serving: {e}")))
    });
    tracing::info!(%addr, policy = identity.policy(), service = identity.service(), "worker serving");
    Ok(WorkerHandle {
        addr,
        tls,
        channels,
        clients: options.clients,
        workers: options.workers,
        stop,
        task,
        _query: query,
    })
}

/// The datafusion-distributed worker on this worker's runtime: every task's session dials
/// other workers over mTLS and reads Parquet through this worker's KMS.
fn worker_service(
    session: &SessionOptions,
    channels: MtlsChannelResolver,
) -> Result<Worker, ClusterError> {
    let runtime = build_runtime(session);
    let factory = runtime
        .parquet_encryption_factory(FACTORY_ID)
        .map_err(|e| ClusterError::Worker(format!("the encryption factory: {e}")))?;
    let rewrite: Arc<dyn WorkerPlanRewriteHandler> =
        Arc::new(WorkerScanRewrite::new(FACTORY_ID, factory));
    Ok(
        Worker::from_session_builder(move |ctx: WorkerQueryContext| {
            let channels = channels.clone();
            let rewrite = Arc::clone(&rewrite);
            async move {
                Ok(ctx
                    .builder
                    .with_distributed_channel_resolver(channels)
                    .with_distributed_worker_plan_rewrite_handler(rewrite)
                    .build())
            }
        })
        .with_runtime_env(runtime)
        .with_version(env!("CARGO_PKG_VERSION")),
    )
}

/// Accepts TCP connections and completes their TLS handshakes concurrently (a slow or hostile
/// client cannot hold up others); established sessions go to the server.
async fn accept_loop(
    listener: TcpListener,
    tls: Arc<ArcSwap<ServerConfig>>,
    incoming: mpsc::Sender<
        Result<tokio_rustls::server::TlsStream<tokio::net::TcpStream>, std::io::Error>,
    >,
    mut stop: watch::Receiver<bool>,
) {
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let permit = tokio::select! {
            permit = Arc::clone(&handshakes).acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
            _ = stop.changed() => return,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.load_full());
        let incoming = incoming.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let _ = incoming.send(Ok(stream)).await;
                }
                Ok(Err(e)) => tracing::info!(%peer, error = %e, "TLS handshake refused"),
                Err(_) => tracing::info!(%peer, "TLS handshake timed out"),
            }
        });
    }
}
