//! `cipherlake worker`: an attested worker. It attests as the policy's worker service,
//! receives its certificate, configuration and KMS rights from the CAS, serves plan fragments
//! over mTLS, and keeps its URL registered with the CAS while it runs.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use cipherlake_cas::client::CasClient;
use cipherlake_cluster::registry;
use cipherlake_cluster::worker::{WorkerHandle, WorkerOptions, serve, worker_url};
use cipherlake_crypto::key_material::KmsClient;
use cipherlake_engine::encryption::RenewableKms;
use cipherlake_engine::session::SessionOptions;
use cipherlake_engine::stores::StoreConfig;
use datafusion::execution::disk_manager::DEFAULT_MAX_TEMP_DIRECTORY_SIZE;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use cipherlake_policy::Operation;

use super::cas::{CasConnection, shutdown_signal};
use super::workload::{Performed, WorkloadArgs};

/// The `worker` operation; constructed only here, where the worker then serves.
pub struct Serving(());

impl Performed for Serving {
    fn operation(&self) -> Operation {
        Operation::Worker
    }
}

/// Serve plan fragments of distributed jobs as an attested worker.
///
/// The worker attests as --policy/--service (default service: worker) and refuses to start
/// when attestation fails. It then accepts mTLS connections only from workloads of the same
/// policy whose service the policy lets it serve (the `run` services granted unwrap on every key
/// the worker unwraps; --clients narrows them), reads encrypted Parquet through the CAS KMS
/// with its own certificate, encrypts its spill files, and registers its URL with the CAS
/// (renewed every few seconds) so drivers started with --workers-from-cas find it. SIGTERM or
/// SIGINT deregisters it and stops it.
#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    cas: CasConnection,
    #[command(flatten)]
    workload: WorkloadArgs,
    #[command(flatten)]
    serve: ServeArgs,
    /// Once attested, serving and registered, write the worker's URL to this file (for a
    /// readiness probe: `cipherlake probe FILE`); it is removed when the worker stops.
    #[arg(long, value_name = "FILE")]
    ready_file: Option<PathBuf>,
}

/// Where and how a worker serves.
#[derive(clap::Args, Clone, Debug)]
pub struct ServeArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0")]
    pub listen: SocketAddr,
    /// The host name or IP address drivers reach this worker at [default: the listen IP].
    #[arg(long, value_name = "HOST")]
    pub advertise: Option<String>,
    /// Only these of the services the policy lets this worker serve may send work and read
    /// streams (comma-separated) [default: all of them: the policy's `run` services granted
    /// unwrap on every key the worker unwraps]. The worker's own service is always admitted,
    /// for worker-to-worker streams.
    #[arg(long, value_name = "SERVICES", value_delimiter = ',')]
    pub clients: Vec<String>,
    /// Memory limit for query execution in MiB (beyond it operators spill, encrypted).
    #[arg(long, value_name = "MIB")]
    pub memory_limit: Option<usize>,
    /// Directory for the encrypted spill files [default: the system temporary directory].
    #[arg(long, value_name = "DIR")]
    pub spill_dir: Option<PathBuf>,
    /// The most the encrypted spill files may hold on disk at once, in MiB; a query that
    /// would spill more fails [default: 102400, DataFusion's 100 GiB].
    #[arg(long, value_name = "MIB")]
    pub spill_limit: Option<u64>,
}

/// The service a worker attests as when none is given.
pub const DEFAULT_WORKER_SERVICE: &str = "worker";

/// A worker that attested, serves and is registered with the CAS; it re-attests before its
/// certificate expires.
pub struct AttestedWorker {
    /// Its URL.
    pub url: Url,
    server: Arc<WorkerHandle>,
    identity: watch::Receiver<CasClient>,
    registration: JoinHandle<()>,
    renewal: JoinHandle<()>,
}

impl AttestedWorker {
    /// Attests as `workload`, then serves as [`ServeArgs`] say and registers with the CAS.
    pub async fn start(
        cas: &CasClient,
        workload: &WorkloadArgs,
        args: &ServeArgs,
    ) -> anyhow::Result<Self> {
        let mut workload = workload.clone();
        workload
            .service
            .get_or_insert_with(|| DEFAULT_WORKER_SERVICE.to_owned());
        let attested = workload
            .attest(cas, &Serving(()))
            .await
            .context("the worker cannot start without a successful attestation")?;
        let identity = attested.tls_identity()?;
        let env = &attested.config().env;
        let stores = StoreConfig::from_pairs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
        let mut clients = served_clients(&attested.config().clients, &args.clients)?;
        clients.push(identity.service().to_owned());
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("listening on {}", args.listen))?;
        let kms = Arc::new(RenewableKms::new(attested.kms()));
        let options = WorkerOptions {
            session: SessionOptions {
                kms: Some(Arc::clone(&kms) as Arc<dyn KmsClient>),
                stores,
                memory_limit: args
                    .memory_limit
                    .map(|mib| {
                        mib.checked_mul(1024 * 1024)
                            .context("--memory-limit is too large")
                    })
                    .transpose()?,
                spill_dir: args.spill_dir.clone(),
                spill_limit: match args.spill_limit {
                    Some(mib) => mib
                        .checked_mul(1024 * 1024)
                        .context("--spill-limit is too large")?,
                    None => DEFAULT_MAX_TEMP_DIRECTORY_SIZE,
                },
                ..SessionOptions::default()
            },
            workers: vec![identity.service().to_owned()],
            identity,
            clients,
        };
        let server = Arc::new(serve(listener, options)?);
        let host = match &args.advertise {
            Some(host) => host.clone(),
            None if args.listen.ip().is_unspecified() => anyhow::bail!(
                "--listen {} accepts on every interface: give --advertise HOST, the name drivers reach this worker at",
                args.listen
            ),
            None => args.listen.ip().to_string(),
        };
        let url = worker_url(&host, server.addr.port())?;
        let (identity_tx, identity) = watch::channel(attested.cas().clone());
        let ttl = registry::register(&identity.borrow(), &url)
            .await
            .with_context(|| format!("registering {url} with the CAS"))?;
        let registration = registry::keep_registered(identity.clone(), url.clone(), ttl);
        let renewal = tokio::spawn(keep_renewed(
            Renewal {
                cas: cas.clone(),
                workload,
                server: Arc::clone(&server),
                kms,
                identity: identity_tx,
            },
            attested.expires(),
        ));
        Ok(AttestedWorker {
            url,
            server,
            identity,
            registration,
            renewal,
        })
    }

    /// Deregisters from the CAS and stops serving.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.renewal.abort();
        self.registration.abort();
        // Both finished before deregistering: a renewal in flight cannot re-list the worker.
        let _ = self.renewal.await;
        let _ = self.registration.await;
        let client = self.identity.borrow().clone();
        if let Err(e) = registry::deregister(&client, &self.url).await {
            tracing::warn!(error = %e, "deregistering from the CAS failed");
        }
        match Arc::try_unwrap(self.server) {
            Ok(server) => server.stop().await?,
            Err(_) => anyhow::bail!("the worker server is still in use"),
        }
        Ok(())
    }
}

/// The services a worker serves: those the policy allows (`allowed`), narrowed to `requested`
/// when given; a requested service the policy does not allow is an error naming it.
fn served_clients(allowed: &[String], requested: &[String]) -> anyhow::Result<Vec<String>> {
    if requested.is_empty() {
        if allowed.is_empty() {
            tracing::warn!(
                "the policy lets this worker serve no run service (none is granted unwrap on every key the worker unwraps)"
            );
        }
        return Ok(allowed.to_vec());
    }
    for service in requested {
        if !allowed.contains(service) {
            anyhow::bail!(
                "--clients {service}: the policy does not let this worker serve it (a worker serves only run services granted unwrap on every key it unwraps; allowed: {})",
                if allowed.is_empty() {
                    "none".to_owned()
                } else {
                    allowed.join(", ")
                }
            );
        }
    }
    Ok(requested.to_vec())
}

/// What re-attesting replaces.
struct Renewal {
    cas: CasClient,
    workload: WorkloadArgs,
    server: Arc<WorkerHandle>,
    kms: Arc<RenewableKms>,
    identity: watch::Sender<CasClient>,
}

impl Renewal {
    /// Attests again; switches the TLS identity, the KMS client and the registration client
    /// to the new certificate; returns its expiry.
    async fn renew(&self) -> anyhow::Result<u64> {
        let attested = self.workload.attest(&self.cas, &Serving(())).await?;
        self.server.renew(&attested.tls_identity()?)?;
        self.kms.replace(attested.kms());
        self.identity.send_replace(attested.cas().clone());
        Ok(attested.expires())
    }
}

/// Re-attests when a third of the certificate's remaining life is left, until aborted; a
/// failed attempt is retried every 10 s. A worker that cannot renew drops out on its own: its
/// expired certificate is refused by peers and by the CAS's registry.
async fn keep_renewed(renewal: Renewal, mut expires: u64) {
    let mut wait = renewal_wait(expires);
    loop {
        tokio::time::sleep(wait).await;
        match renewal.renew().await {
            Ok(next) => {
                expires = next;
                wait = renewal_wait(expires);
            }
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "re-attesting the worker failed; retrying in 10 s");
                wait =
                    Duration::from_secs(10).min(renewal_wait(expires).max(Duration::from_secs(1)));
            }
        }
    }
}

/// Two thirds of the time left until `expires` (unix seconds), at least a second.
fn renewal_wait(expires: u64) -> Duration {
    let left = expires.saturating_sub(cipherlake_cas::service::now());
    Duration::from_secs((left * 2 / 3).max(1))
}

/// Runs `cipherlake worker`.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let cas = args.cas.client()?;
    let worker = AttestedWorker::start(&cas, &args.workload, &args.serve).await?;
    println!("worker {} serving", worker.url);
    eprintln!(
        "worker {} attested and registered with the CAS; SIGTERM or Ctrl-C stops it",
        worker.url
    );
    if let Some(file) = &args.ready_file {
        super::demo::write_atomically(file, format!("{}\n", worker.url).as_bytes(), 0o644)?;
    }
    let signal = shutdown_signal().await?;
    eprintln!("{signal}: deregistering and stopping");
    if let Some(file) = &args.ready_file {
        let _ = std::fs::remove_file(file);
    }
    worker.stop().await
}
