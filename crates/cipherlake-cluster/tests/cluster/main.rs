//! Integration tests of the cluster layer: the mTLS peer checks under attack, and distributed
//! queries (plaintext and encrypted Parquet) against single-process results.

mod queries;
mod support;
mod tls;
