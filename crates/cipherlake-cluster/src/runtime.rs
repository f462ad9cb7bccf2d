//! Query work off the network runtime. A worker computes plan fragments on a runtime of its
//! own ([`QueryRuntime`]) while its connections (TLS handshakes, HTTP/2 framing, keepalive
//! pings, dialed channels) stay on the runtime that started it. DataFusion's operators poll
//! without yielding for as long as their input is ready; on the runtime of the connections,
//! a worker busy computing would leave HTTP/2 pings unanswered until its peers' keepalive
//! timeout dropped a live connection mid-query. This is the split DataFusion recommends for
//! servers (CPU-bound work and I/O on separate runtimes).

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use futures::future::BoxFuture;
use tokio::runtime::{Handle, Runtime};
use tokio::task::JoinHandle;
use tonic::body::Body;
use tonic::server::NamedService;
use tower::Service;

use crate::ClusterError;

/// The runtime a worker computes on: one thread per core, shut down (without blocking) when
/// dropped, so a worker stopped from async code does not panic on the nested runtime.
pub(crate) struct QueryRuntime {
    handle: Handle,
    /// Taken only when dropped.
    runtime: Option<Runtime>,
}

impl QueryRuntime {
    /// A multi-threaded runtime with `threads` workers, named for what they do.
    pub(crate) fn new(threads: usize) -> Result<Self, ClusterError> {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("cipherlake-query")
            .enable_all()
            .build()
            .map(|runtime| QueryRuntime {
                handle: runtime.handle().clone(),
                runtime: Some(runtime),
            })
            .map_err(|e| ClusterError::Worker(format!("starting the query runtime: {e}")))
    }

    /// Where to spawn query work.
    pub(crate) fn handle(&self) -> Handle {
        self.handle.clone()
    }
}

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

/// A gRPC service whose calls run on another runtime: everything a call spawns (the streams
/// of a task, their operators' tasks) lands there, and the response stream the connection
/// polls only receives finished batches.
#[derive(Clone)]
pub(crate) struct OnRuntime<S> {
    inner: S,
    runtime: Handle,
}

impl<S> OnRuntime<S> {
    /// `inner`, called on `runtime`.
    pub(crate) fn new(inner: S, runtime: Handle) -> Self {
        OnRuntime { inner, runtime }
    }
}

impl<S: NamedService> NamedService for OnRuntime<S> {
    const NAME: &'static str = S::NAME;
}

impl<S> Service<http::Request<Body>> for OnRuntime<S>
where
    S: Service<http::Request<Body>, Response = http::Response<Body>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<'static, Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The service polled ready is the one called; a fresh clone stays for the next call.
        let fresh = self.inner.clone();
        let mut ready = std::mem::replace(&mut self.inner, fresh);
        let call = AbortOnDrop(self.runtime.spawn(ready.call(request)));
        Box::pin(async move {
            match call.await {
                Ok(response) => response,
                Err(e) => Ok(tonic::Status::unavailable(format!(
                    "the worker's query runtime dropped the call: {e}"
                ))
                .into_http()),
            }
        })
    }
}

/// A spawned call that is cancelled when its caller goes away (the client reset the stream).
struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Future for AbortOnDrop<T> {
    type Output = Result<T, tokio::task::JoinError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spawns hyper's connection tasks on the runtime that made the channel, wherever the
/// channel is first used: a worker dials other workers from its query runtime, and their
/// connections must answer pings while it computes.
#[derive(Clone)]
pub(crate) struct SpawnOn(pub(crate) Handle);

impl<F> hyper::rt::Executor<F> for SpawnOn
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, future: F) {
        self.0.spawn(future);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// Spins for `busy` in one poll that never returns Pending, as a DataFusion operator does
    /// on ready input.
    async fn compute(busy: Duration) {
        let until = Instant::now() + busy;
        while Instant::now() < until {
            std::hint::spin_loop();
        }
    }

    /// How long a task on the caller's runtime (an HTTP/2 ping's answer) takes from being
    /// spawned to the end of its 50 ms timer.
    async fn timer_delay() -> Duration {
        let started = Instant::now();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            started.elapsed()
        })
        .await
        .unwrap()
    }

    /// The point of the split: while every query thread computes, the caller's runtime (one
    /// thread, as the connections') still fires its timers on time; the same work on the
    /// caller's runtime starves them, which shows the test can tell the two apart.
    #[tokio::test(flavor = "multi_thread", worker_threads = 1)]
    async fn the_callers_runtime_stays_responsive_while_queries_compute() {
        let busy = Duration::from_millis(1500);
        let query = QueryRuntime::new(2).unwrap();
        let work: Vec<_> = (0..2)
            .map(|_| query.handle().spawn(compute(busy)))
            .collect();
        let delay = timer_delay().await;
        assert!(
            delay < busy / 2,
            "the timer waited {delay:?} for the query threads"
        );
        for task in work {
            task.await.unwrap();
        }

        let own = tokio::spawn(compute(busy));
        let delay = timer_delay().await;
        own.await.unwrap();
        assert!(delay >= busy / 2, "the control did not starve ({delay:?})");
    }
}
