//! Encrypted Parquet on workers. DataFusion's plan serialization drops a Parquet scan's
//! encryption settings (factory and options), so a scan arrives on a worker unable to open
//! encrypted files; and plans must never carry keys. Each worker therefore rewrites every
//! Parquet scan it receives to read through its *own* encryption factory: data keys are
//! unwrapped by the CAS KMS with the worker's certificate, under its policy's grants.
//!
//! The same rewrite refuses what a worker must never run: a write (`DataSinkExec`, which
//! would lose its encryption settings the same way and write plaintext) and a scan that
//! carries explicit key material in its options.

use std::sync::Arc;

use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{DataFusionError, Result};
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::sink::DataSinkExec;
use datafusion::datasource::source::DataSourceExec;
use datafusion::execution::parquet_encryption::EncryptionFactory;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    WorkerPlanRewriteEvent, WorkerPlanRewriteEventResponse, WorkerPlanRewriteHandler,
};

/// The worker plan rewrite: every Parquet scan reads through `factory` (registered as
/// `factory_id`); writes and scans with inline keys are refused.
pub struct WorkerScanRewrite {
    factory_id: &'static str,
    factory: Arc<dyn EncryptionFactory>,
}

impl WorkerScanRewrite {
    /// The rewrite attaching `factory`, registered on the worker as `factory_id`.
    pub fn new(factory_id: &'static str, factory: Arc<dyn EncryptionFactory>) -> Self {
        WorkerScanRewrite {
            factory_id,
            factory,
        }
    }
}

impl WorkerPlanRewriteHandler for WorkerScanRewrite {
    fn rewrite_worker_plan(
        &self,
        event: WorkerPlanRewriteEvent,
    ) -> Result<WorkerPlanRewriteEventResponse> {
        let plan = event
            .plan
            .transform_down(|node| attach_factory(node, self.factory_id, &self.factory))?
            .data;
        Ok(WorkerPlanRewriteEventResponse::new(plan))
    }
}

fn attach_factory(
    node: Arc<dyn ExecutionPlan>,
    factory_id: &str,
    factory: &Arc<dyn EncryptionFactory>,
) -> Result<Transformed<Arc<dyn ExecutionPlan>>> {
    if node.is::<DataSinkExec>() {
        return Err(DataFusionError::Plan(
            "a worker was sent a write (DataSinkExec); writes run on the driver only".into(),
        ));
    }
    let Some((scan, parquet)) = node
        .downcast_ref::<DataSourceExec>()
        .and_then(|source| source.downcast_to_file_source::<ParquetSource>())
    else {
        return Ok(Transformed::no(node));
    };
    let mut options = parquet.table_parquet_options().clone();
    if options.crypto.file_decryption.is_some() || options.crypto.file_encryption.is_some() {
        return Err(DataFusionError::Plan(
            "a worker was sent a Parquet scan carrying key material; keys come from the KMS only"
                .into(),
        ));
    }
    options.crypto.factory_id = Some(factory_id.to_owned());
    let parquet = parquet
        .clone()
        .with_table_parquet_options(options)
        .with_encryption_factory(Arc::clone(factory));
    let scan = FileScanConfigBuilder::from(scan.clone())
        .with_source(Arc::new(parquet))
        .build();
    Ok(Transformed::yes(DataSourceExec::from_data_source(scan)))
}
