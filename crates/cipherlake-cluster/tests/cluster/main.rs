//! Integration tests of the cluster layer: the mTLS peer checks under attack, and distributed
//! queries (plaintext and encrypted Parquet) against single-process results.

#[path = "../../../cipherlake-engine/tests/engine/canary_watch.rs"]
mod canary_watch;
mod queries;
mod support;
mod tls;
