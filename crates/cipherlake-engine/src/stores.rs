//! Object stores behind table URLs: local files, Azure Blob Storage and Data Lake Storage Gen2
//! (`az://`, `azure://`, `abfs://`, `abfss://`, `adl://`) and S3 (`s3://`, `s3a://`).
//!
//! Cloud stores are built on first use of a URL from [`StoreConfig`]: settings in object_store's
//! own names, given as environment-style variables (`AZURE_STORAGE_ACCOUNT_NAME`,
//! `AZURE_STORAGE_SAS_TOKEN`, `AZURE_STORAGE_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, …).
//! A confidential job gets them from the configuration the CAS released (a SAS token is then a
//! policy secret); `cipherlake sql` takes them from its environment. Credentials never appear in
//! table URLs, so they stay out of plans and messages.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use datafusion::error::{DataFusionError, Result};
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use object_store::ObjectStore;
use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
use url::Url;
use zeroize::Zeroizing;

use crate::EngineError;

/// Cloud storage settings (values may be credentials: zeroized, never printed).
#[derive(Clone, Default)]
pub struct StoreConfig {
    azure: Vec<(AzureConfigKey, Zeroizing<String>)>,
    s3: Vec<(AmazonS3ConfigKey, Zeroizing<String>)>,
}

impl std::fmt::Debug for StoreConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoreConfig")
            .field(
                "azure",
                &self.azure.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("s3", &self.s3.iter().map(|(k, _)| k).collect::<Vec<_>>())
            .finish()
    }
}

impl StoreConfig {
    /// Settings from `NAME → value` pairs: every `AZURE_*` and `AWS_*` name must be one
    /// object_store knows (an unknown one is an error naming it, never its value); other names
    /// are not storage settings and are skipped.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Self, EngineError> {
        let mut config = StoreConfig::default();
        for (name, value) in pairs {
            let key = name.to_ascii_lowercase();
            let unknown = || EngineError::StoreSetting {
                name: name.to_string(),
            };
            if key.starts_with("azure_") {
                let key = key.parse().map_err(|_| unknown())?;
                config.azure.push((key, Zeroizing::new(value.to_string())));
            } else if key.starts_with("aws_") {
                let key = key.parse().map_err(|_| unknown())?;
                config.s3.push((key, Zeroizing::new(value.to_string())));
            }
        }
        Ok(config)
    }

    /// Settings from this process's environment; names object_store does not know are skipped
    /// (the environment holds many unrelated `AWS_*` variables).
    pub fn from_env() -> Self {
        let mut config = StoreConfig::default();
        for (name, value) in std::env::vars() {
            if let Ok(one) = StoreConfig::from_pairs([(name.as_str(), value.as_str())]) {
                config.azure.extend(one.azure);
                config.s3.extend(one.s3);
            }
        }
        config
    }

    fn build(&self, url: &Url) -> Result<Option<Arc<dyn ObjectStore>>> {
        let failed = |e: object_store::Error| {
            DataFusionError::Execution(format!("cannot open {}: {e}", display_root(url)))
        };
        Ok(match url.scheme() {
            "az" | "azure" | "abfs" | "abfss" | "adl" => {
                let mut builder = MicrosoftAzureBuilder::new().with_url(url.as_str());
                for (key, value) in &self.azure {
                    builder = builder.with_config(*key, value.as_str());
                }
                Some(Arc::new(builder.build().map_err(failed)?))
            }
            "s3" | "s3a" => {
                let mut builder = AmazonS3Builder::new().with_url(url.as_str());
                for (key, value) in &self.s3 {
                    builder = builder.with_config(*key, value.as_str());
                }
                Some(Arc::new(builder.build().map_err(failed)?))
            }
            _ => None,
        })
    }
}

/// `scheme://authority` of a URL (no path, query or credentials), for messages.
fn display_root(url: &Url) -> String {
    format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default())
}

/// DataFusion's registry (local files and explicitly registered stores) that also opens Azure
/// and S3 stores on first use, from a [`StoreConfig`]. Cloud stores are kept per
/// `scheme://[container@]account-or-bucket`: DataFusion's own registry keys by host alone,
/// which would give two containers of one Data Lake account (`abfss://c1@acct…`,
/// `abfss://c2@acct…`) the same store.
#[derive(Debug)]
pub struct CloudStores {
    registered: DefaultObjectStoreRegistry,
    opened: RwLock<HashMap<String, Arc<dyn ObjectStore>>>,
    config: StoreConfig,
}

impl CloudStores {
    /// A registry with these settings.
    pub fn new(config: StoreConfig) -> Self {
        CloudStores {
            registered: DefaultObjectStoreRegistry::new(),
            opened: RwLock::default(),
            config,
        }
    }
}

impl ObjectStoreRegistry for CloudStores {
    fn register_store(
        &self,
        url: &Url,
        store: Arc<dyn ObjectStore>,
    ) -> Option<Arc<dyn ObjectStore>> {
        self.registered.register_store(url, store)
    }

    fn deregister_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        self.registered.deregister_store(url)
    }

    fn get_store(&self, url: &Url) -> Result<Arc<dyn ObjectStore>> {
        if let Ok(store) = self.registered.get_store(url) {
            return Ok(store);
        }
        let key = format!(
            "{}://{}",
            url.scheme(),
            &url[url::Position::BeforeUsername..url::Position::AfterPort]
        );
        if let Some(store) = self.opened.read().ok().and_then(|o| o.get(&key).cloned()) {
            return Ok(store);
        }
        match self.config.build(url)? {
            Some(store) => {
                if let Ok(mut opened) = self.opened.write() {
                    opened.insert(key, Arc::clone(&store));
                }
                Ok(store)
            }
            None => self.registered.get_store(url),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_parsed_and_never_shown() {
        let config = StoreConfig::from_pairs([
            ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
            ("AZURE_STORAGE_SAS_TOKEN", "sv=2024&sig=c2VjcmV0"),
            ("AWS_REGION", "eu-west-1"),
            ("TAXI", "az://c/taxi"),
        ])
        .unwrap();
        assert_eq!((config.azure.len(), config.s3.len()), (2, 1));
        assert!(!format!("{config:?}").contains("sig="));
    }

    #[test]
    fn unknown_storage_settings_are_named() {
        let err = StoreConfig::from_pairs([("AZURE_STORAGE_SAS_TOKNE", "sig=x")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("AZURE_STORAGE_SAS_TOKNE") && !err.contains("sig=x"),
            "{err}"
        );
    }

    #[test]
    fn azure_urls_get_a_store_per_container_and_local_paths_still_work() {
        let stores = CloudStores::new(
            StoreConfig::from_pairs([
                ("AZURE_STORAGE_ACCOUNT_NAME", "acct"),
                ("AZURE_STORAGE_SAS_TOKEN", "sv=2024&sig=c2VjcmV0"),
            ])
            .unwrap(),
        );
        let a = stores
            .get_store(&Url::parse("az://c/taxi/x.parquet").unwrap())
            .unwrap();
        let b = stores
            .get_store(&Url::parse("az://c/other").unwrap())
            .unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        let c1 = stores
            .get_store(&Url::parse("abfss://c1@acct.dfs.core.windows.net/x").unwrap())
            .unwrap();
        let c2 = stores
            .get_store(&Url::parse("abfss://c2@acct.dfs.core.windows.net/x").unwrap())
            .unwrap();
        assert!(
            !Arc::ptr_eq(&c1, &c2),
            "containers of one account are separate stores"
        );
        assert!(
            stores
                .get_store(&Url::parse("file:///tmp").unwrap())
                .is_ok()
        );
        assert!(stores.get_store(&Url::parse("gs://b/x").unwrap()).is_err());
    }
}
