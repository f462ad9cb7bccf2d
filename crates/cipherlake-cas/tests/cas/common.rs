//! Test environment: a CAS on 127.0.0.1:0 in a temp dir, a registered LAS, an owner key.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use cipherlake_attest::las::Las;
use cipherlake_attest::sim::PlatformKey;
use cipherlake_cas::CasError;
use cipherlake_cas::api::{AttestRequest, EvidenceBody};
use cipherlake_cas::client::{
    AttestKeys, Attested, CasClient, decode_nonce, fingerprint, las_evidence,
};
use cipherlake_cas::server::{self, ServerHandle};
use cipherlake_cas::service::Config;
use cipherlake_policy::{Intent, Operation, OwnerSigningKey, SignedPolicy, sign};

pub const JOB: [u8; 32] = [7u8; 32];

pub struct Env {
    pub dir: tempfile::TempDir,
    pub server: Option<ServerHandle>,
    pub client: CasClient,
    pub owner: OwnerSigningKey,
    /// The key of the standard policy's user `ingest` (wraps footer and pii).
    pub user: OwnerSigningKey,
    pub las_socket: PathBuf,
    pub measurement: String,
}

/// SHA-384 of this test executable: what the LAS measures for us (hashed once per process).
pub fn own_measurement() -> String {
    static MEASUREMENT: OnceLock<String> = OnceLock::new();
    MEASUREMENT
        .get_or_init(|| {
            let file = std::fs::File::open("/proc/self/exe").unwrap();
            hex::encode(cipherlake_attest::las::hash_file(file).unwrap())
        })
        .clone()
}

/// One LAS shared by every test (on its own thread and runtime, so it outlives each test's
/// runtime and measures this executable once): its socket and platform key hex.
pub fn shared_las() -> &'static (PathBuf, String) {
    static LAS: OnceLock<(PathBuf, String)> = OnceLock::new();
    LAS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let socket = dir.join("las.sock");
        let (tx, rx) = std::sync::mpsc::channel();
        let path = socket.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let key = PlatformKey::generate().unwrap();
                let public = hex::encode(key.public_key().to_bytes());
                let las = Las::bind(key, &path).unwrap();
                tx.send(public).unwrap();
                las.run().await.unwrap();
            });
        });
        (socket, rx.recv().unwrap())
    })
}

/// Starts a LAS with a fresh platform key on `socket`; returns the key's hex.
pub fn start_las(socket: &Path) -> String {
    let key = PlatformKey::generate().unwrap();
    let public = hex::encode(key.public_key().to_bytes());
    let las = Las::bind(key, socket).unwrap();
    tokio::spawn(las.run());
    public
}

pub async fn start_server(dir: &Path, nonce_ttl: Duration) -> (ServerHandle, CasClient) {
    let mut config = Config::new(dir);
    config.nonce_ttl = nonce_ttl;
    let server = server::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let client = CasClient::new(
        &format!("https://127.0.0.1:{}", server.addr.port()),
        fingerprint(&server.tls_cert_der),
    )
    .unwrap();
    (server, client)
}

impl Env {
    pub async fn start() -> Env {
        Self::start_with_ttl(Duration::from_secs(60)).await
    }

    pub async fn start_with_ttl(nonce_ttl: Duration) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (server, client) = start_server(&data, nonce_ttl).await;
        let (las_socket, platform) = shared_las().clone();
        let token = std::fs::read_to_string(data.join("operator.token")).unwrap();
        client
            .register_platform(token.trim(), &platform)
            .await
            .unwrap();
        Env {
            dir,
            server: Some(server),
            client,
            owner: OwnerSigningKey::generate().unwrap(),
            user: OwnerSigningKey::generate().unwrap(),
            las_socket,
            measurement: own_measurement(),
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The standard test policy: a driver running job [`JOB`] with the footer key, a worker
    /// with the pii key.
    pub fn policy(
        &self,
        name: &str,
        tees: &str,
        measurement: &str,
        predecessor: Option<&str>,
    ) -> String {
        format!(
            r#"apiVersion: cipherlake/v1
name: {name}
predecessor: {pred}
owners: [{owner}]
attestation:
  tees: [{tees}]
services:
  driver:
    operation: run
    measurements: [sha384:{measurement}]
    jobs: [sha256:{job}]
    env:
      DB_URL: "{{{{ secret.db_url }}}}"
      FOOTER_HEX: "{{{{ secret.footer | hex }}}}"
    args: ["--service", "{{{{ service.name }}}}"]
    files:
      /etc/app.conf: "policy={{{{ policy.name }}}}"
    kms_keys: {{ footer: [unwrap, wrap] }}
  worker:
    operation: worker
    measurements: [sha384:{measurement}]
    kms_keys: {{ pii: [unwrap] }}
users:
  ingest:
    key: {user}
    kms_keys: {{ footer: [wrap], pii: [wrap] }}
secrets:
  db_url: {{ kind: ascii, value: "postgres://user:s3cr3t@db/taxi" }}
  footer: {{ kind: aes-256, generate: true }}
  pii: {{ kind: aes-256, generate: true }}
"#,
            pred = predecessor.unwrap_or("null"),
            owner = self.owner.public_key(),
            user = self.user.public_key(),
            job = hex::encode(JOB),
        )
    }

    pub fn sign(&self, text: &str) -> SignedPolicy {
        sign(text, &self.owner).unwrap()
    }

    pub async fn apply(&self, name: &str, text: &str) -> Result<String, CasError> {
        Ok(self.client.apply_policy(name, &self.sign(text)).await?.hash)
    }

    /// Applies the standard policy for this executable and sim.
    pub async fn apply_standard(&self, name: &str) -> String {
        self.apply(name, &self.policy(name, "sim", &self.measurement, None))
            .await
            .unwrap()
    }

    /// Attests through the LAS performing the operation of the standard policy's service
    /// (`worker` for the worker, `run` otherwise).
    pub async fn attest(
        &self,
        policy: &str,
        service: &str,
        job: Option<[u8; 32]>,
    ) -> Result<Attested, CasError> {
        self.attest_as(policy, service, operation_of(service), job)
            .await
    }

    /// Attests through the LAS binding `operation`.
    pub async fn attest_as(
        &self,
        policy: &str,
        service: &str,
        operation: Operation,
        job: Option<[u8; 32]>,
    ) -> Result<Attested, CasError> {
        let socket = self.las_socket.clone();
        self.client
            .attest(policy, service, operation, job, |rd| async move {
                las_evidence(&socket, rd).await
            })
            .await
    }

    /// The client signing as user `user` of `policy` with `key`.
    pub fn as_user(&self, policy: &str, user: &str, key: &OwnerSigningKey) -> CasClient {
        self.client
            .with_credential(cipherlake_cas::client::Credential::user(
                policy,
                user,
                OwnerSigningKey::from_file_text(&key.to_file_text()).unwrap(),
            ))
    }

    /// The client presenting the certificate of `service` of `policy`, attested through the
    /// LAS (see [`Env::attest`]).
    pub async fn as_service(
        &self,
        policy: &str,
        service: &str,
        job: Option<[u8; 32]>,
    ) -> CasClient {
        let attested = self.attest(policy, service, job).await.unwrap();
        self.client.with_identity(&attested).unwrap()
    }

    /// The operator token.
    pub fn operator_token(&self) -> String {
        std::fs::read_to_string(self.data_dir().join("operator.token"))
            .unwrap()
            .trim()
            .to_string()
    }

    /// The audit log, read as the operator.
    pub async fn audit(&self) -> cipherlake_cas::audit::Export {
        self.client
            .audit_as_operator(&self.operator_token())
            .await
            .unwrap()
    }

    /// A correct request: fresh keys, a fresh nonce and LAS evidence binding them.
    pub async fn request(
        &self,
        policy: &str,
        service: &str,
        job: Option<[u8; 32]>,
    ) -> (AttestKeys, AttestRequest) {
        self.request_binding(policy, service, Intent::Perform(operation_of(service)), job)
            .await
    }

    /// As [`Env::request`], with evidence binding `intent` (the request still claims the
    /// service's operation).
    pub async fn request_binding(
        &self,
        policy: &str,
        service: &str,
        intent: Intent,
        job: Option<[u8; 32]>,
    ) -> (AttestKeys, AttestRequest) {
        let keys = AttestKeys::generate().unwrap();
        let nonce = self.client.nonce().await.unwrap();
        let rd = keys.report_data(intent, &decode_nonce(&nonce.nonce).unwrap(), job.as_ref());
        let evidence = las_evidence(&self.las_socket, rd).await.unwrap();
        let request = request_for(&keys, policy, service, nonce.nonce, evidence, job);
        (keys, request)
    }
}

/// The operation of a service of the standard policy.
pub fn operation_of(service: &str) -> Operation {
    match service {
        "worker" => Operation::Worker,
        _ => Operation::Run,
    }
}

pub fn request_for(
    keys: &AttestKeys,
    policy: &str,
    service: &str,
    nonce: String,
    evidence: EvidenceBody,
    job: Option<[u8; 32]>,
) -> AttestRequest {
    use base64::Engine as _;
    AttestRequest {
        policy: policy.into(),
        service: service.into(),
        operation: operation_of(service).to_string(),
        nonce,
        evidence,
        csr: keys.csr_pem().into(),
        hpke_public_key: base64::engine::general_purpose::STANDARD.encode(keys.hpke_public_key()),
        job_hash: job.map(|j| format!("sha256:{}", hex::encode(j))),
    }
}

/// Asserts a denial carrying a reason starting with `code`.
pub fn assert_denied<T: std::fmt::Debug>(result: Result<T, CasError>, code: &str) -> Vec<String> {
    match result {
        Err(CasError::Denied(reasons)) => {
            assert!(
                reasons.iter().any(|r| r.starts_with(code)),
                "expected reason {code}, got {reasons:?}"
            );
            reasons
        }
        other => panic!("expected a denial with {code}, got {other:?}"),
    }
}

/// The software TPM of `scripts/swtpm` (`CIPHERLAKE_TEST_SWTPM`); fails loudly without it.
pub fn swtpm() -> cipherlake_attest::tpm::device::TpmPath {
    std::env::var("CIPHERLAKE_TEST_SWTPM")
        .expect(
            "CIPHERLAKE_TEST_SWTPM is not set: run the tests through scripts/test, which starts \
             and provisions a software TPM (scripts/swtpm)",
        )
        .parse()
        .expect("tcp:HOST:PORT")
}

/// A file of the shared evidence fixtures.
pub fn evidence_fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/evidence")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Attests as `service` of `policy` with the real Milan SEV-SNP report (which cannot bind a
/// fresh nonce), with or without its VCEK.
pub async fn attest_with_milan_report(
    env: &Env,
    policy: &str,
    with_vcek: bool,
) -> Result<Attested, CasError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let body = EvidenceBody {
        tee: "sev-snp".into(),
        bytes: b64.encode(cipherlake_attest::encoding::decode_binary_or_hex(
            &evidence_fixture("snp/report_milan.hex"),
        )),
        collateral: with_vcek.then(|| cipherlake_cas::api::CollateralBody::Snp {
            vek: b64.encode(evidence_fixture("snp/vcek_milan.der")),
            chain_pem: None,
        }),
    };
    env.client
        .attest(policy, "driver", Operation::Run, Some(JOB), |_| async {
            Ok(body)
        })
        .await
}
