//! The workload side: ask the LAS for a report.

use std::path::Path;

use tokio::net::UnixStream;

use super::LasError;
use super::protocol::{self, Reply, ReportKind, Request};
use crate::{Evidence, Tee};

/// Asks the LAS at `socket` for a sim report binding `report_data`.
pub async fn request_report(socket: &Path, report_data: &[u8; 64]) -> Result<Evidence, LasError> {
    let request = Request {
        kind: ReportKind::Sim,
        report_data: Some(hex::encode(report_data)),
    };
    Ok(Evidence::new(Tee::Sim, exchange(socket, &request).await?))
}

/// Asks the LAS at `socket` for a sim-vtpm HCL report over the user data its TPM holds.
pub async fn request_hcl_report(socket: &Path) -> Result<Vec<u8>, LasError> {
    let request = Request {
        kind: ReportKind::SimVtpm,
        report_data: None,
    };
    exchange(socket, &request).await
}

async fn exchange(socket: &Path, request: &Request) -> Result<Vec<u8>, LasError> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(LasError::io(format!(
            "connecting to the LAS at {}",
            socket.display()
        )))?;
    let request = serde_json::to_vec(request).map_err(|e| LasError::Protocol(e.to_string()))?;
    protocol::write_frame(&mut stream, &request)
        .await
        .map_err(LasError::io("sending the request to the LAS"))?;
    let frame = protocol::read_frame(&mut stream)
        .await
        .map_err(LasError::io("reading the LAS reply"))?;
    match serde_json::from_slice(&frame).map_err(|e| LasError::Protocol(e.to_string()))? {
        Reply::Report(report) => {
            hex::decode(report).map_err(|e| LasError::Protocol(format!("report is not hex: {e}")))
        }
        Reply::Error(reason) => Err(LasError::Refused(reason)),
    }
}
