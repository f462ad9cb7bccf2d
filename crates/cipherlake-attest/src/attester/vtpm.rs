//! The vTPM attester: Azure confidential VMs (SEV-SNP and TDX), whose hardware report the
//! paravisor hands out through the vTPM, and sim-vtpm, where the LAS stands in for the
//! paravisor.
//!
//! 1. write the 64 bytes of report data to NV index [`REPORT_DATA_INDEX`] (the paravisor then
//!    refreshes the HCL report, with the data as its `user-data`);
//! 2. read the HCL report from NV index [`HCL_REPORT_INDEX`], waiting until its user data is
//!    ours (sim-vtpm: ask the LAS for it);
//! 3. quote the SHA-256 PCR bank with the attestation key at [`AK_HANDLE`] over the report data,
//!    and read the PCR values;
//! 4. SEV-SNP: fetch the VCEK from the platform; TDX: have the TDREPORT turned into a TD quote.
//!    Both only when given an endpoint (Azure's is `http://169.254.169.254`, never a default).
//!
//! The TPM is reached through our own command layer ([`crate::tpm::device`]): five commands
//! marshalled by hand instead of binding the C tss2 stack, so the binary stays free of
//! C libraries it would have to load in a minimal image.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::AttestError;
use crate::tpm::device::{Tpm, TpmError, TpmPath};
use crate::vtpm::hcl::{HW_REPORT_OFFSET, TD_REPORT_LEN};
use crate::vtpm::{HclReport, ReportType, RuntimeClaims, VtpmEvidence};
use crate::{Evidence, Tee};

/// NV index of the HCL report.
pub const HCL_REPORT_INDEX: u32 = 0x0140_0001;
/// NV index the guest writes its report data to.
pub const REPORT_DATA_INDEX: u32 = 0x0140_0002;
/// Persistent handle of the attestation key.
pub const AK_HANDLE: u32 = 0x8100_0003;
/// How long to wait for the paravisor to refresh the HCL report.
const REFRESH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the HCL report comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HclSource {
    /// The vTPM's NV index (Azure confidential VMs).
    Nv,
    /// The LAS at this socket (sim-vtpm).
    Las(PathBuf),
}

/// Collects vTPM evidence.
#[derive(Debug, Clone)]
pub struct VtpmAttester {
    tpm: TpmPath,
    source: HclSource,
    platform_endpoint: Option<String>,
}

impl VtpmAttester {
    /// An attester on the TPM at `tpm`, taking HCL reports from `source`.
    pub fn new(tpm: TpmPath, source: HclSource) -> Self {
        VtpmAttester {
            tpm,
            source,
            platform_endpoint: None,
        }
    }

    /// Fetches the VCEK (SEV-SNP) or the TD quote (TDX) from this endpoint, for example
    /// `http://169.254.169.254` on Azure. Without one, SEV-SNP evidence carries no VCEK (the
    /// verifier must have it) and TDX evidence cannot be made.
    pub fn with_platform_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.platform_endpoint = Some(endpoint.into());
        self
    }

    /// The TPM this attester uses.
    pub fn tpm(&self) -> &TpmPath {
        &self.tpm
    }

    /// Collects evidence binding `report_data` as both the TPM quote's nonce and the HCL
    /// report's user data.
    pub async fn attest(&self, report_data: &[u8; 64]) -> Result<Evidence, AttestError> {
        let data = *report_data;
        // Each step opens the TPM anew: the LAS reads the same TPM in between, and a software
        // TPM serves one connection at a time.
        let tpm = self.tpm.clone();
        with_tpm(&tpm, move |t| t.nv_write(REPORT_DATA_INDEX, &data)).await?;
        let (hcl_report, from_nv) = match &self.source {
            HclSource::Las(socket) => (crate::las::request_hcl_report(socket).await?, false),
            HclSource::Nv => {
                let path = tpm.clone();
                let report = blocking(move || wait_for_report(&path, &data)).await?;
                (report, true)
            }
        };
        let (tee, report_type) = report_kind(&hcl_report, from_nv)?;
        let (quote, pcrs) = with_tpm(&tpm, move |t| {
            let quote = t.quote(AK_HANDLE, &data)?;
            Ok((quote, t.pcrs()?))
        })
        .await?;
        let mut evidence = VtpmEvidence {
            version: crate::vtpm::layout::CURRENT_VERSION,
            quote_message: quote.message,
            quote_signature: quote.signature,
            pcrs,
            hcl_report,
            vcek: None,
            td_quote: None,
        };
        match (report_type, &self.platform_endpoint) {
            (ReportType::Snp, Some(endpoint)) => evidence.vcek = Some(fetch_vcek(endpoint).await?),
            (ReportType::Tdx, Some(endpoint)) => {
                let td_report =
                    &evidence.hcl_report[HW_REPORT_OFFSET..HW_REPORT_OFFSET + TD_REPORT_LEN];
                evidence.td_quote = Some(fetch_td_quote(endpoint, td_report).await?);
            }
            (ReportType::Tdx, None) => {
                return Err(AttestError::Interface(
                    "a TDX confidential VM's TDREPORT becomes verifiable only as a TD quote: \
                     give the platform endpoint that makes it (Azure: http://169.254.169.254)"
                        .into(),
                ));
            }
            _ => {}
        }
        Ok(Evidence::new(tee, evidence.to_json()))
    }
}

/// The evidence kind an HCL report is for. The attester may trust its own paravisor's
/// header; verifiers never do.
fn report_kind(hcl: &[u8], from_nv: bool) -> Result<(Tee, ReportType), AttestError> {
    let kinds: &[(Tee, ReportType)] = if from_nv {
        &[
            (Tee::AzureSnpVtpm, ReportType::Snp),
            (Tee::AzureTdxVtpm, ReportType::Tdx),
        ]
    } else {
        &[(Tee::SimVtpm, ReportType::Sim)]
    };
    kinds
        .iter()
        .copied()
        .find(|(_, kind)| HclReport::parse(hcl, *kind).is_ok())
        .ok_or_else(|| {
            AttestError::Interface(format!(
                "the HCL report ({} bytes) is not one of {}",
                hcl.len(),
                kinds
                    .iter()
                    .map(|(tee, _)| tee.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        })
}

/// Reads the HCL report until its user data is `data` (the paravisor refreshes it after the
/// write), for at most [`REFRESH_TIMEOUT`].
fn wait_for_report(path: &TpmPath, data: &[u8; 64]) -> Result<Vec<u8>, AttestError> {
    let started = Instant::now();
    let mut tpm = Tpm::open(path).map_err(tpm_error)?;
    loop {
        let report = tpm.nv_read(HCL_REPORT_INDEX).map_err(tpm_error)?;
        let fresh = [ReportType::Snp, ReportType::Tdx].iter().any(|kind| {
            HclReport::parse(&report, *kind)
                .ok()
                .and_then(|hcl| RuntimeClaims::parse(hcl.runtime_claims).ok())
                .is_some_and(|claims| claims.user_data.starts_with(data))
        });
        if fresh {
            return Ok(report);
        }
        if started.elapsed() > REFRESH_TIMEOUT {
            return Err(AttestError::Interface(format!(
                "the HCL report at NV index {HCL_REPORT_INDEX:#x} still carries other user data \
                 {} s after the report data was written",
                REFRESH_TIMEOUT.as_secs()
            )));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn tpm_error(e: TpmError) -> AttestError {
    AttestError::Interface(e.to_string())
}

/// Runs `f` on a fresh connection to the TPM at `path`, off the async threads.
async fn with_tpm<T: Send + 'static>(
    path: &TpmPath,
    f: impl FnOnce(&mut Tpm) -> Result<T, TpmError> + Send + 'static,
) -> Result<T, AttestError> {
    let path = path.clone();
    blocking(move || {
        let mut tpm = Tpm::open(&path).map_err(tpm_error)?;
        f(&mut tpm).map_err(tpm_error)
    })
    .await
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, AttestError> + Send + 'static,
) -> Result<T, AttestError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| AttestError::Interface(format!("vTPM attester task failed: {e}")))?
}

/// A client for the platform endpoint, which is plain HTTP (Azure's link-local metadata
/// service); an `https` endpoint is refused, since nothing here would pin its certificate.
fn http_client(endpoint: &str) -> Result<reqwest::Client, AttestError> {
    if !endpoint.starts_with("http://") {
        return Err(AttestError::Interface(format!(
            "platform endpoint {endpoint:?}: only http:// endpoints (the VM's metadata service) are supported"
        )));
    }
    // reqwest needs a TLS configuration even for plain HTTP; this one trusts nothing.
    let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| AttestError::Interface(format!("HTTP client: {e}")))?
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(20))
        .no_proxy()
        .build()
        .map_err(|e| AttestError::Interface(format!("HTTP client: {e}")))
}

/// Azure's THIM: `GET {endpoint}/metadata/THIM/amd/certification` → `{"vcekCert": PEM, …}`.
async fn fetch_vcek(endpoint: &str) -> Result<Vec<u8>, AttestError> {
    #[derive(serde::Deserialize)]
    struct Certification {
        #[serde(rename = "vcekCert")]
        vcek_cert: String,
    }
    let url = format!(
        "{}/metadata/THIM/amd/certification",
        endpoint.trim_end_matches('/')
    );
    let response: Certification = http_client(endpoint)?
        .get(&url)
        .header("Metadata", "true")
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| AttestError::Interface(format!("fetching the VCEK from {url}: {e}")))?
        .json()
        .await
        .map_err(|e| AttestError::Interface(format!("the VCEK answer of {url}: {e}")))?;
    Ok(response.vcek_cert.into_bytes())
}

/// Azure's quoting endpoint: `POST {endpoint}/acc/tdquote` with `{"report": base64url}` →
/// `{"quote": base64url}`.
async fn fetch_td_quote(endpoint: &str, td_report: &[u8]) -> Result<Vec<u8>, AttestError> {
    #[derive(serde::Deserialize)]
    struct Quote {
        quote: String,
    }
    let url = format!("{}/acc/tdquote", endpoint.trim_end_matches('/'));
    let response: Quote = http_client(endpoint)?
        .post(&url)
        .header("Metadata", "true")
        .json(&serde_json::json!({"report": URL_SAFE_NO_PAD.encode(td_report)}))
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .map_err(|e| AttestError::Interface(format!("fetching the TD quote from {url}: {e}")))?
        .json()
        .await
        .map_err(|e| AttestError::Interface(format!("the TD quote answer of {url}: {e}")))?;
    URL_SAFE_NO_PAD
        .decode(response.quote.trim_end_matches('='))
        .or_else(|_| base64::engine::general_purpose::STANDARD.decode(&response.quote))
        .map_err(|e| AttestError::Interface(format!("the TD quote of {url} is not base64: {e}")))
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    /// A loopback HTTP server answering one request with `body`; returns its URL and the
    /// request it received.
    async fn serve_once(body: String) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.unwrap();
            // Read the head, then as much body as it announces.
            let mut request = Vec::new();
            let mut chunk = [0u8; 4096];
            loop {
                let n = stream.read(&mut chunk).await.unwrap();
                request.extend_from_slice(&chunk[..n]);
                let text = String::from_utf8_lossy(&request).to_ascii_lowercase();
                if let Some(head) = text.find("\r\n\r\n") {
                    let length = text[..head]
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= head + 4 + length {
                        break;
                    }
                }
                if n == 0 {
                    break;
                }
            }
            let n = request.len();
            let response = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            stream.write_all(response.as_bytes()).await.unwrap();
            String::from_utf8_lossy(&request[..n]).to_string()
        });
        (url, handle)
    }

    #[tokio::test]
    async fn the_vcek_comes_from_the_configured_endpoint_only() {
        let (url, request) =
            serve_once(r#"{"vcekCert":"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n","certificateChain":""}"#.into()).await;
        let vcek = fetch_vcek(&url).await.expect("vcek");
        assert!(vcek.starts_with(b"-----BEGIN CERTIFICATE-----"));
        let request = request.await.unwrap();
        assert!(
            request.starts_with("GET /metadata/THIM/amd/certification"),
            "{request}"
        );
        assert!(
            request.to_ascii_lowercase().contains("metadata: true"),
            "{request}"
        );
    }

    #[tokio::test]
    async fn the_td_report_is_posted_and_the_quote_decoded() {
        let quote = [7u8; 100];
        let (url, request) = serve_once(format!(
            r#"{{"quote":"{}"}}"#,
            URL_SAFE_NO_PAD.encode(quote)
        ))
        .await;
        let got = fetch_td_quote(&url, &[1u8; TD_REPORT_LEN])
            .await
            .expect("quote");
        assert_eq!(got, quote);
        let request = request.await.unwrap();
        assert!(request.starts_with("POST /acc/tdquote"), "{request}");
        assert!(
            request.contains(&URL_SAFE_NO_PAD.encode([1u8; 32])),
            "{request}"
        );
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_a_clear_error() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = fetch_vcek(&format!("http://127.0.0.1:{port}"))
            .await
            .expect_err("nothing listens");
        assert!(err.to_string().contains("fetching the VCEK"), "{err}");
        let err = fetch_vcek("https://169.254.169.254")
            .await
            .expect_err("https");
        assert!(err.to_string().contains("only http://"), "{err}");
    }
}
