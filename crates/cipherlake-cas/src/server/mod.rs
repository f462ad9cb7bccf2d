//! The HTTPS server: axum routes ([`routes`]) over rustls (ring) with optional client
//! certificates ([`tls`]), Prometheus metrics ([`metrics`]) and graceful shutdown.

pub mod metrics;
pub mod routes;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use crate::CasError;
use crate::service::{Cas, Config};

/// A running server.
pub struct ServerHandle {
    /// The bound address.
    pub addr: SocketAddr,
    /// The CAS TLS certificate, DER (clients pin it).
    pub tls_cert_der: Vec<u8>,
    /// The CAS audit public key.
    pub audit_public_key: [u8; 32],
    shutdown: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

/// How long [`ServerHandle::shutdown`] lets in-flight requests finish before closing their
/// connections.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

impl ServerHandle {
    /// Stops accepting (the port is closed at once), lets in-flight requests finish (at most
    /// [`DRAIN_TIMEOUT`]; idle connections close immediately), then returns.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }

    /// Waits until the server stops (it stops only through [`ServerHandle::shutdown`] or a
    /// fatal accept error).
    pub async fn wait(self) {
        let _ = self.task.await;
    }
}

/// Opens the CAS with `config` and serves HTTPS on `listen` (port 0 picks one).
pub async fn start(config: Config, listen: SocketAddr) -> Result<ServerHandle, CasError> {
    let attester = config.attester.clone().map(Arc::new);
    let cas = Arc::new(
        tokio::task::spawn_blocking(move || Cas::open(config))
            .await
            .map_err(|e| CasError::Crypto(format!("opening the CAS: {e}")))??,
    );
    let tls = tls::server_config(cas.tls_cert_der(), cas.tls_key_der())?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(CasError::io(format!("binding {listen}")))?;
    let addr = listener
        .local_addr()
        .map_err(CasError::io("reading the bound address"))?;
    let (shutdown, mut stop) = watch::channel(false);
    let tls_cert_der = cas.tls_cert_der().to_vec();
    let audit_public_key = cas.audit_public_key();
    let router = routes::router(routes::AppState {
        cas,
        metrics: Arc::default(),
        attester,
    });
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    let task = tokio::spawn(async move {
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                accepted = listener.accept() => match accepted {
                    Ok((stream, peer)) => {
                        connections.spawn(tls::serve_connection(
                            acceptor.clone(),
                            stream,
                            peer,
                            router.clone(),
                            stop.clone(),
                        ));
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                },
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        drop(listener);
        let open = connections.len();
        tracing::info!(connections = open, "CAS stopped accepting; draining");
        let drained = tokio::time::timeout(DRAIN_TIMEOUT, async {
            while connections.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                connections = connections.len(),
                "requests still running after the drain timeout; closing their connections"
            );
            connections.abort_all();
            while connections.join_next().await.is_some() {}
        }
    });
    tracing::info!(%addr, "CAS serving");
    Ok(ServerHandle {
        addr,
        tls_cert_der,
        audit_public_key,
        shutdown,
        task,
    })
}
