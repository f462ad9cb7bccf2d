//! Workers in the CAS: a worker keeps its URL registered (renewing well before the
//! registration lapses, so a stopped worker drops out within one TTL), and a driver started
//! with `--workers-from-cas` follows the list of live workers of its policy.

use std::time::Duration;

use cipherlake_cas::client::CasClient;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use url::Url;

use crate::ClusterError;
use crate::driver::WorkerList;

/// How often a driver refreshes its worker list from the CAS.
pub const FOLLOW_INTERVAL: Duration = Duration::from_secs(2);

/// `https://host:port` with the port always written (the form the CAS accepts; [`Url`] drops
/// 443 and adds a path `/`).
fn origin(url: &Url) -> String {
    format!(
        "https://{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or_default()
    )
}

/// Registers `url` now; fails when the CAS refuses (the caller should not serve then).
pub async fn register(cas: &CasClient, url: &Url) -> Result<Duration, ClusterError> {
    Ok(cas.register_worker(&origin(url)).await?)
}

/// Renews the registration of `url` every third of its TTL until aborted, with the latest CAS
/// client in `cas` (a renewed certificate replaces it); a failed renewal is logged and retried
/// after a second.
pub fn keep_registered(cas: watch::Receiver<CasClient>, url: Url, ttl: Duration) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut every = ttl / 3;
        loop {
            tokio::time::sleep(every).await;
            let client = cas.borrow().clone();
            match client.register_worker(&origin(&url)).await {
                Ok(ttl) => every = ttl / 3,
                Err(e) => {
                    tracing::warn!(%url, error = %e, "renewing the worker registration failed");
                    every = Duration::from_secs(1);
                }
            }
        }
    })
}

/// Removes the registration of `url` (on shutdown).
pub async fn deregister(cas: &CasClient, url: &Url) -> Result<(), ClusterError> {
    Ok(cas.deregister_worker(&origin(url)).await?)
}

/// Sets `list` to the live workers of the caller's policy registered as `service`.
pub async fn refresh(
    cas: &CasClient,
    service: &str,
    list: &WorkerList,
) -> Result<usize, ClusterError> {
    let urls = cas
        .workers(service)
        .await?
        .iter()
        .filter_map(|u| Url::parse(u).ok())
        .collect::<Vec<_>>();
    let count = urls.len();
    list.set(urls);
    Ok(count)
}

/// Refreshes `list` every [`FOLLOW_INTERVAL`] until aborted; on a failed refresh the last
/// list stays.
pub fn follow_workers(cas: CasClient, service: String, list: WorkerList) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(FOLLOW_INTERVAL).await;
            if let Err(e) = refresh(&cas, &service, &list).await {
                tracing::warn!(error = %e, "refreshing the worker list from the CAS failed");
            }
        }
    })
}
