//! A KMS client that can be replaced while sessions use it: a long-running workload (a worker)
//! re-attests before its certificate expires and switches to a CAS KMS client presenting the
//! new certificate, without rebuilding its runtime.

use std::sync::{Arc, RwLock};

use cipherlake_crypto::key_material::{KmsClient, KmsError};
use zeroize::Zeroizing;

/// Delegates to the client most recently set.
pub struct RenewableKms {
    current: RwLock<Arc<dyn KmsClient>>,
}

impl RenewableKms {
    /// Starts with `client`.
    pub fn new(client: Arc<dyn KmsClient>) -> Self {
        RenewableKms {
            current: RwLock::new(client),
        }
    }

    /// Later calls go to `client`.
    pub fn replace(&self, client: Arc<dyn KmsClient>) {
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = client;
    }

    fn current(&self) -> Arc<dyn KmsClient> {
        Arc::clone(
            &self
                .current
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

impl KmsClient for RenewableKms {
    fn wrap_key(&self, key: &[u8], master_key_id: &str) -> Result<String, KmsError> {
        self.current().wrap_key(key, master_key_id)
    }

    fn unwrap_key(
        &self,
        wrapped_key: &str,
        master_key_id: &str,
    ) -> Result<Zeroizing<Vec<u8>>, KmsError> {
        self.current().unwrap_key(wrapped_key, master_key_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cipherlake_crypto::key_material::LocalKms;

    #[test]
    fn calls_go_to_the_client_set_last() {
        let first: Arc<dyn KmsClient> =
            Arc::new(LocalKms::from_key_list("k:AAECAwQFBgcICQoLDA0ODw==").unwrap());
        let second: Arc<dyn KmsClient> =
            Arc::new(LocalKms::from_key_list("k:EBESExQVFhcYGRobHB0eHw==").unwrap());
        let kms = RenewableKms::new(Arc::clone(&first));
        let wrapped = kms.wrap_key(b"data key 16bytes", "k").unwrap();
        assert_eq!(
            &*first.unwrap_key(&wrapped, "k").unwrap(),
            b"data key 16bytes"
        );
        kms.replace(second);
        assert!(
            kms.unwrap_key(&wrapped, "k").is_err(),
            "the replaced client's master key no longer applies"
        );
    }
}
