//! The CAS KMS as a [`KmsClient`]: master keys stay in the CAS, which wraps and unwraps data
//! keys for the attested workload presenting its CAS-issued certificate (mTLS).
//!
//! Parquet readers and writers ask for keys synchronously, from DataFusion's threads, while the
//! CAS client is async. [`CasKms`] owns one thread with its own single-threaded runtime that
//! performs the HTTPS calls; callers block only on the reply. The unwrapper caches keys per job,
//! so a job makes one call per distinct wrapped key, not per file or row group.

use std::sync::mpsc;
use std::thread::JoinHandle;

use cipherlake_cas::CasError;
use cipherlake_cas::client::CasClient;
use cipherlake_crypto::key_material::{KmsClient, KmsError};
use zeroize::Zeroizing;

enum Call {
    Wrap {
        key: Zeroizing<Vec<u8>>,
        master_key_id: String,
        reply: mpsc::SyncSender<Result<String, KmsError>>,
    },
    Unwrap {
        wrapped: String,
        master_key_id: String,
        reply: mpsc::SyncSender<Result<Zeroizing<Vec<u8>>, KmsError>>,
    },
}

/// A [`KmsClient`] backed by the CAS KMS. Build it from a [`CasClient`] that presents the
/// workload certificate ([`CasClient::with_identity`]) or signs as a policy user
/// ([`CasClient::with_credential`]); the CAS authorises each call against that principal's
/// `kms_keys` and audits it. Its calls run on a runtime of its own, so it takes the client's
/// credentials with a connection pool of its own ([`CasClient::with_own_connections`]).
pub struct CasKms {
    calls: Option<mpsc::Sender<Call>>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for CasKms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CasKms").finish_non_exhaustive()
    }
}

impl CasKms {
    /// Starts the KMS thread for `client`.
    pub fn new(client: CasClient) -> std::io::Result<Self> {
        let client = client
            .with_own_connections()
            .map_err(std::io::Error::other)?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (calls, queue) = mpsc::channel::<Call>();
        let thread = std::thread::Builder::new()
            .name("cipherlake-cas-kms".into())
            .spawn(move || {
                while let Ok(call) = queue.recv() {
                    runtime.block_on(serve(&client, call));
                }
            })?;
        Ok(CasKms {
            calls: Some(calls),
            thread: Some(thread),
        })
    }

    fn send<T>(
        &self,
        master_key_id: &str,
        call: impl FnOnce(mpsc::SyncSender<Result<T, KmsError>>) -> Call,
    ) -> Result<T, KmsError> {
        let (reply, answer) = mpsc::sync_channel(1);
        let stopped = || KmsError::Unavailable {
            master_key_id: master_key_id.to_string(),
            reason: "the CAS KMS client has stopped".into(),
        };
        self.calls
            .as_ref()
            .ok_or_else(stopped)?
            .send(call(reply))
            .map_err(|_| stopped())?;
        answer.recv().map_err(|_| stopped())?
    }
}

async fn serve(client: &CasClient, call: Call) {
    match call {
        Call::Wrap {
            key,
            master_key_id,
            reply,
        } => {
            let result = client
                .kms_wrap(&master_key_id, &key)
                .await
                .map_err(|e| kms_error(&master_key_id, e));
            let _ = reply.send(result);
        }
        Call::Unwrap {
            wrapped,
            master_key_id,
            reply,
        } => {
            let result = client
                .kms_unwrap(&master_key_id, &wrapped)
                .await
                .map_err(|e| kms_error(&master_key_id, e));
            let _ = reply.send(result);
        }
    }
}

/// Maps a CAS reply to the KMS error a Parquet reader reports: a key the CAS does not know, a
/// wrapped key that does not authenticate, or a refusal/transport failure with the CAS's reason.
fn kms_error(master_key_id: &str, error: CasError) -> KmsError {
    let master_key_id = master_key_id.to_string();
    match error {
        CasError::NotFound(_) => KmsError::UnknownMasterKey { master_key_id },
        CasError::BadRequest(reason) if reason.contains("authenticate") => {
            KmsError::UnwrapFailed { master_key_id }
        }
        CasError::Forbidden(reason) | CasError::Unauthorized(reason) => KmsError::AccessDenied {
            master_key_id,
            reason,
        },
        other => KmsError::Unavailable {
            master_key_id,
            reason: format!("CAS KMS: {other}"),
        },
    }
}

impl KmsClient for CasKms {
    fn wrap_key(&self, key: &[u8], master_key_id: &str) -> Result<String, KmsError> {
        self.send(master_key_id, |reply| Call::Wrap {
            key: Zeroizing::new(key.to_vec()),
            master_key_id: master_key_id.to_string(),
            reply,
        })
    }

    fn unwrap_key(
        &self,
        wrapped_key: &str,
        master_key_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.send(master_key_id, |reply| Call::Unwrap {
            wrapped: wrapped_key.to_string(),
            master_key_id: master_key_id.to_string(),
            reply,
        })
    }
}

impl Drop for CasKms {
    fn drop(&mut self) {
        // Closing the queue ends the thread once it has answered the calls in flight.
        self.calls.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
