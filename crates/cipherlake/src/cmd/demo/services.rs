//! The demo's services, in this process: a LAS on a Unix socket in the workdir and a CAS on a
//! loopback port with its state in the workdir, the LAS registered as a platform.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use cipherlake_attest::las::{Las, init_key, load_key};
use cipherlake_attest::sim::PlatformPublicKey;
use cipherlake_cas::client::{CasClient, fingerprint};
use cipherlake_cas::server::ServerHandle;
use cipherlake_cas::service::Config;

use super::create_private_dir;

/// The running LAS and CAS.
pub struct Services {
    /// A client of the CAS (pinned to its certificate).
    pub cas: CasClient,
    /// The CAS URL.
    pub url: String,
    /// The LAS socket.
    pub las_socket: PathBuf,
    /// The CAS audit public key.
    pub audit_key: [u8; 32],
    operator_token: zeroize::Zeroizing<String>,
    platform: PlatformPublicKey,
    server: ServerHandle,
    las: tokio::task::JoinHandle<()>,
    /// The runtime the CAS and the LAS run on: their own, so that workloads of this process
    /// blocking their threads on KMS calls (the Parquet key retriever is synchronous) can
    /// never starve the CAS that answers those calls.
    runtime: ServicesRuntime,
}

impl Services {
    /// Starts the LAS (creating its platform key on first use) and the CAS (creating its state
    /// on first use), and registers the LAS platform key with the CAS.
    pub async fn start(workdir: &Path) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("demo-services")
            .enable_all()
            .build()
            .context("starting the services' runtime")?;
        let runtime = ServicesRuntime(Some(runtime));
        let key_file = workdir.join("las/platform.key");
        if !key_file.exists() {
            create_private_dir(&workdir.join("las"))?;
            init_key(&key_file)?;
        }
        let key = load_key(&key_file)?;
        let platform = key.public_key();
        let las_socket = workdir.join("las.sock");
        let las = {
            let _guard = runtime.get().enter();
            Las::bind(key, &las_socket)?
        };
        let las = runtime.get().spawn(async move {
            if let Err(e) = las.run().await {
                tracing::error!(error = %e, "the demo LAS stopped");
            }
        });
        let listen: SocketAddr = ([127, 0, 0, 1], 0).into();
        let server = runtime
            .get()
            .spawn(cipherlake_cas::server::start(
                Config::new(workdir.join("cas")),
                listen,
            ))
            .await
            .context("the CAS start task failed")?
            .context("starting the CAS")?;
        let url = format!("https://{}", server.addr);
        let cas = CasClient::new(&url, fingerprint(&server.tls_cert_der))?;
        let token_file = workdir.join("cas/operator.token");
        let token = zeroize::Zeroizing::new(
            std::fs::read_to_string(&token_file)
                .with_context(|| format!("reading {}", token_file.display()))?,
        );
        cas.register_platform(token.trim(), &platform.to_string())
            .await?;
        Ok(Services {
            cas,
            url,
            las_socket,
            audit_key: server.audit_public_key,
            operator_token: zeroize::Zeroizing::new(token.trim().to_string()),
            platform,
            server,
            las,
            runtime,
        })
    }

    /// The audit log, read as the operator.
    pub async fn audit_as_operator(&self) -> anyhow::Result<cipherlake_cas::audit::Export> {
        Ok(self.cas.audit_as_operator(&self.operator_token).await?)
    }

    /// This executable's measurement as the LAS sees it (SHA-384 of the file): read from a
    /// verified report, so the LAS hashes the executable once and serves every later
    /// attestation of this process from its cache.
    pub async fn measurement(&self) -> anyhow::Result<String> {
        crate::cmd::generated_policy::measurement(&self.las_socket, self.platform).await
    }

    /// Stops the CAS (draining requests) and the LAS.
    pub async fn stop(self) {
        let server = self.server;
        let _ = self.runtime.get().spawn(server.shutdown()).await;
        self.las.abort();
        let _ = std::fs::remove_file(&self.las_socket);
    }
}

/// A runtime dropped with `shutdown_background`, which async code may do (a plain drop there
/// panics): the services' runtime when `start` fails half-way, or when they stop.
struct ServicesRuntime(Option<tokio::runtime::Runtime>);

impl ServicesRuntime {
    fn get(&self) -> &tokio::runtime::Runtime {
        self.0.as_ref().expect("present until dropped")
    }
}

impl Drop for ServicesRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.0.take() {
            runtime.shutdown_background();
        }
    }
}
