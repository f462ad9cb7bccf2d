//! The workload side: ask the LAS for a report.

use std::path::Path;

use tokio::net::UnixStream;

use super::LasError;
use super::protocol::{self, Reply, Request};
use crate::{Evidence, Tee};

/// Asks the LAS at `socket` for a sim report binding `report_data`.
pub async fn request_report(socket: &Path, report_data: &[u8; 64]) -> Result<Evidence, LasError> {
    let mut stream = UnixStream::connect(socket)
        .await
        .map_err(LasError::io(format!(
            "connecting to the LAS at {}",
            socket.display()
        )))?;
    let request = serde_json::to_vec(&Request {
        report_data: hex::encode(report_data),
    })
    .map_err(|e| LasError::Protocol(e.to_string()))?;
    protocol::write_frame(&mut stream, &request)
        .await
        .map_err(LasError::io("sending the request to the LAS"))?;
    let frame = protocol::read_frame(&mut stream)
        .await
        .map_err(LasError::io("reading the LAS reply"))?;
    match serde_json::from_slice(&frame).map_err(|e| LasError::Protocol(e.to_string()))? {
        Reply::Report(report) => hex::decode(report)
            .map(|bytes| Evidence::new(Tee::Sim, bytes))
            .map_err(|e| LasError::Protocol(format!("report is not hex: {e}"))),
        Reply::Error(reason) => Err(LasError::Refused(reason)),
    }
}
