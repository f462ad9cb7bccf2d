//! The live workers of each policy: attested workers register their URL with their workload
//! certificate and renew the registration before it lapses; drivers of the same policy list
//! them. Kept in memory: after a CAS restart workers re-register within one renewal period.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use crate::CasError;
use crate::service::Workload;

/// How long a registration lasts without renewal.
pub const REGISTRATION_TTL: Duration = Duration::from_secs(15);

/// Longest accepted worker URL.
const MAX_URL_LEN: usize = 256;

/// Most live registrations per service of a policy: a misbehaving workload can neither grow
/// the table without bound nor crowd out another service's workers.
const MAX_PER_SERVICE: usize = 256;

#[derive(Debug, Clone)]
struct Registration {
    service: String,
    expires: u64,
}

/// Registered workers by policy, then URL.
#[derive(Debug, Default)]
pub struct WorkerRegistry {
    policies: Mutex<HashMap<String, HashMap<String, Registration>>>,
}

impl WorkerRegistry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, HashMap<String, Registration>>> {
        self.policies
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Registers (or renews) `url` for `worker` until `now` + [`REGISTRATION_TTL`].
    pub fn register(&self, worker: &Workload, url: &str, now: u64) -> Result<(), CasError> {
        check_url(url)?;
        let mut policies = self.lock();
        let workers = policies.entry(worker.policy.clone()).or_default();
        workers.retain(|_, r| r.expires > now);
        let registered = workers
            .values()
            .filter(|r| r.service == worker.service)
            .count();
        if !workers.contains_key(url) && registered >= MAX_PER_SERVICE {
            return Err(CasError::Conflict(format!(
                "service {:?} of policy {:?} already has {MAX_PER_SERVICE} live registrations",
                worker.service, worker.policy
            )));
        }
        let renewed = workers
            .insert(
                url.to_owned(),
                Registration {
                    service: worker.service.clone(),
                    expires: now + REGISTRATION_TTL.as_secs(),
                },
            )
            .is_some();
        if !renewed {
            tracing::info!(policy = %worker.policy, service = %worker.service, url, "worker registered");
        }
        Ok(())
    }

    /// Removes `url` if `worker`'s service registered it.
    pub fn deregister(&self, worker: &Workload, url: &str) {
        let mut policies = self.lock();
        if let Some(workers) = policies.get_mut(&worker.policy)
            && workers
                .get(url)
                .is_some_and(|r| r.service == worker.service)
        {
            workers.remove(url);
            tracing::info!(policy = %worker.policy, service = %worker.service, url, "worker deregistered");
        }
    }

    /// The live workers of `policy` registered as `service`, sorted.
    pub fn live(&self, policy: &str, service: &str, now: u64) -> Vec<String> {
        let policies = self.lock();
        let mut urls: Vec<String> = policies
            .get(policy)
            .into_iter()
            .flatten()
            .filter(|(_, r)| r.service == service && r.expires > now)
            .map(|(url, _)| url.clone())
            .collect();
        urls.sort();
        urls
    }
}

/// A worker URL is `https://HOST:PORT` and nothing else.
fn check_url(url: &str) -> Result<(), CasError> {
    let bad = |why: &str| CasError::BadRequest(format!("worker URL {url:?}: {why}"));
    if url.len() > MAX_URL_LEN {
        return Err(bad("too long"));
    }
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| bad("must start with https://"))?;
    let (host, port) = rest
        .rsplit_once(':')
        .ok_or_else(|| bad("must name a port"))?;
    if host.is_empty()
        || !host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-[]:".contains(c))
    {
        return Err(bad("the host must be a DNS name or an IP address"));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(bad("the port must be 1-65535")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn workload(policy: &str, service: &str) -> Workload {
        Workload {
            policy: policy.into(),
            service: service.into(),
            certificate_serial: "01".into(),
        }
    }

    #[test]
    fn registrations_expire_and_stay_within_their_policy() {
        let registry = WorkerRegistry::default();
        let w = workload("p", "worker");
        registry
            .register(&w, "https://127.0.0.1:7001", 100)
            .unwrap();
        registry
            .register(&workload("other", "worker"), "https://127.0.0.1:7002", 100)
            .unwrap();
        assert_eq!(
            registry.live("p", "worker", 101),
            vec!["https://127.0.0.1:7001"]
        );
        assert!(registry.live("p", "driver", 101).is_empty());
        assert!(
            registry
                .live("p", "worker", 100 + REGISTRATION_TTL.as_secs())
                .is_empty()
        );
        registry
            .register(&w, "https://127.0.0.1:7001", 200)
            .unwrap();
        registry.deregister(&workload("p", "driver"), "https://127.0.0.1:7001");
        assert_eq!(
            registry.live("p", "worker", 201).len(),
            1,
            "only its own service removes it"
        );
        registry.deregister(&w, "https://127.0.0.1:7001");
        assert!(registry.live("p", "worker", 201).is_empty());
    }

    #[test]
    fn one_service_cannot_crowd_out_another() {
        let registry = WorkerRegistry::default();
        let noisy = workload("p", "ingest");
        for port in 1..=MAX_PER_SERVICE {
            registry
                .register(&noisy, &format!("https://10.0.0.1:{port}"), 0)
                .unwrap();
        }
        let err = registry
            .register(&noisy, "https://10.0.0.2:1", 0)
            .unwrap_err();
        assert!(err.to_string().contains("256 live registrations"), "{err}");
        registry
            .register(&workload("p", "worker"), "https://10.0.0.3:1", 0)
            .expect("the worker service still registers");
        assert_eq!(registry.live("p", "worker", 1), vec!["https://10.0.0.3:1"]);
    }

    #[test]
    fn malformed_urls_are_refused() {
        let registry = WorkerRegistry::default();
        let w = workload("p", "worker");
        for url in [
            "http://127.0.0.1:7001",
            "https://127.0.0.1",
            "https://user@host:1",
            "https://host:0",
            "https://host:1/path",
            "https://:1",
        ] {
            let err = registry.register(&w, url, 0).unwrap_err().to_string();
            assert!(err.contains("worker URL"), "{url}: {err}");
        }
        let long = format!("https://{}:1", "a".repeat(300));
        assert!(registry.register(&w, &long, 0).is_err());
    }
}
