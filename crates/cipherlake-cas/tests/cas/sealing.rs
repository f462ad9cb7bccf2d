//! The master key sealed by a TPM (swtpm from `scripts/swtpm`, `CIPHERLAKE_TEST_SWTPM`; a
//! second swtpm started here plays another host's TPM): a restart unseals, a changed PCR or
//! another TPM does not, and a restored older data directory is caught by the epoch counter.

use std::path::Path;
use std::process::{Child, Command};
use std::time::Duration;

use cipherlake_attest::tpm::device::{Tpm, TpmPath};
use cipherlake_cas::sealing::{Sealing, TpmSealing};
use cipherlake_cas::server::{self, ServerHandle};
use cipherlake_cas::service::Config;

use crate::common::swtpm;

/// The sealing tests change PCR 16 and share the software TPM: one at a time.
static TPM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sealed to the debug PCR 16, which tests may extend; each test its own counter index.
fn sealing(tpm: TpmPath, counter_index: u32) -> Sealing {
    Sealing::Tpm(TpmSealing {
        tpm,
        pcrs: vec![16],
        counter_index,
        recovery_key: None,
    })
}

/// Starting must fail; the reason.
async fn refused(dir: &Path, sealing: &Sealing) -> String {
    match start(dir, sealing).await {
        Ok(_) => panic!("the CAS started"),
        Err(e) => e,
    }
}

async fn start(dir: &Path, sealing: &Sealing) -> Result<ServerHandle, String> {
    let mut config = Config::new(dir);
    config.nonce_ttl = Duration::from_secs(60);
    config.sealing = sealing.clone();
    server::start(config, "127.0.0.1:0".parse().unwrap())
        .await
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_unseals_and_a_changed_pcr_refuses_naming_it() {
    let _turn = TPM.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sealing = sealing(swtpm(), 0x0150_0a01);
    let first = start(&data, &sealing).await.expect("first start seals");
    let audit_key = first.audit_public_key;
    first.shutdown().await;
    assert!(data.join("master.tpm").exists());
    assert!(!data.join("master.key").exists(), "no plaintext key file");
    let again = start(&data, &sealing).await.expect("restart unseals");
    assert_eq!(again.audit_public_key, audit_key, "the same state");
    let client = cipherlake_cas::client::CasClient::new(
        &format!("https://127.0.0.1:{}", again.addr.port()),
        cipherlake_cas::client::fingerprint(&again.tls_cert_der),
    )
    .unwrap();
    let (status, body) = client
        .raw(reqwest::Method::GET, "/healthz", None)
        .await
        .unwrap();
    assert!(status.is_success());
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(health["sealing"], "tpm", "{health}");
    again.shutdown().await;

    Tpm::open(&swtpm())
        .unwrap()
        .extend(16, &[0x42; 32])
        .unwrap();
    let err = refused(&data, &sealing).await;
    assert!(
        err.contains("sealed to PCR 16") && err.contains("platform changed"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_copied_to_another_tpm_does_not_unseal() {
    let _turn = TPM.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Sealed to PCR 23, which no test extends: both TPMs report the same value, so only the
    // TPM differs.
    let on = |tpm| {
        Sealing::Tpm(TpmSealing {
            tpm,
            pcrs: vec![23],
            counter_index: 0x0150_0a02,
            recovery_key: None,
        })
    };
    start(&data, &on(swtpm()))
        .await
        .expect("start")
        .shutdown()
        .await;
    let other = OtherTpm::start(dir.path());
    let err = refused(&data, &on(other.path())).await;
    assert!(err.contains("sealed by another TPM"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restored_older_data_directory_is_caught_by_the_epoch_counter() {
    let _turn = TPM.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sealing = sealing(swtpm(), 0x0150_0a03);
    start(&data, &sealing)
        .await
        .expect("start")
        .shutdown()
        .await;
    let snapshot = dir.path().join("snapshot");
    copy_dir(&data, &snapshot);
    // Two more epochs (two starts) pass.
    for _ in 0..2 {
        start(&data, &sealing)
            .await
            .expect("restart")
            .shutdown()
            .await;
    }
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&snapshot, &data);
    let err = refused(&data, &sealing).await;
    assert!(
        err.contains("an older copy of the data directory was restored"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_data_directory_only_one_epoch_old_is_refused_too() {
    // The crash window runs the other way (the database one epoch ahead of the counter; see
    // sealing::tests): a copy one epoch behind the counter is an older copy.
    let _turn = TPM.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let sealing = sealing(swtpm(), 0x0150_0a04);
    start(&data, &sealing)
        .await
        .expect("start")
        .shutdown()
        .await;
    let snapshot = dir.path().join("snapshot");
    copy_dir(&data, &snapshot);
    start(&data, &sealing)
        .await
        .expect("restart")
        .shutdown()
        .await;
    std::fs::remove_dir_all(&data).unwrap();
    copy_dir(&snapshot, &data);
    let err = refused(&data, &sealing).await;
    assert!(err.contains("older copy"), "{err}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

/// A second software TPM, on loopback, killed on drop.
struct OtherTpm {
    child: Child,
    port: u16,
}

impl OtherTpm {
    fn start(dir: &Path) -> Self {
        let state = dir.join("other-tpm");
        std::fs::create_dir_all(&state).unwrap();
        let port = loop {
            let a = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = a.local_addr().unwrap().port();
            if std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
                break port;
            }
        };
        let child = Command::new("swtpm")
            .args(["socket", "--tpm2", "--tpmstate"])
            .arg(format!("dir={}", state.display()))
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .args(["--flags", "not-need-init,startup-clear"])
            .spawn()
            .expect("swtpm (installed by scripts/swtpm)");
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        OtherTpm { child, port }
    }

    fn path(&self) -> TpmPath {
        format!("tcp:127.0.0.1:{}", self.port).parse().unwrap()
    }
}

impl Drop for OtherTpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owners_recovery_key_reseals_after_a_platform_change() {
    use cipherlake_cas::seal::HpkeKeyPair;
    use cipherlake_cas::sealing::TpmMasterKey;
    let _turn = TPM.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let owners = HpkeKeyPair::generate();
    let settings = TpmSealing {
        tpm: swtpm(),
        pcrs: vec![16],
        counter_index: 0x0150_0a05,
        recovery_key: Some(owners.public_key()),
    };
    let sealing = Sealing::Tpm(settings.clone());
    let first = start(&data, &sealing).await.expect("start");
    let audit_key = first.audit_public_key;
    first.shutdown().await;
    assert!(data.join("master.recovery").exists());
    // A firmware update: PCR 16 changes, the CAS no longer unseals.
    Tpm::open(&swtpm())
        .unwrap()
        .extend(16, &[0x17; 32])
        .unwrap();
    assert!(refused(&data, &sealing).await.contains("sealed to PCR 16"));
    // Someone else's key does not recover it.
    let err = TpmMasterKey::recover(&data, &settings, &HpkeKeyPair::generate())
        .expect_err("a stranger's key");
    assert!(
        err.to_string()
            .contains("does not open with this recovery key"),
        "{err}"
    );
    // The owners' key re-seals to the new PCR value; the same state comes back.
    TpmMasterKey::recover(&data, &settings, &owners).expect("recovered");
    let again = start(&data, &sealing).await.expect("starts after recovery");
    assert_eq!(again.audit_public_key, audit_key);
    again.shutdown().await;
}

#[tokio::test]
async fn a_gramine_sealed_master_key_opens_only_with_its_enclave_key() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("attestation");
    std::fs::create_dir_all(root.join("keys")).unwrap();
    std::fs::write(root.join("keys/_sgx_mrenclave"), [0x5a; 16]).unwrap();
    let data = dir.path().join("data");
    let sealing = Sealing::Gramine { root: root.clone() };
    let first = start(&data, &sealing).await.expect("wraps");
    let audit_key = first.audit_public_key;
    first.shutdown().await;
    assert!(data.join("master.gramine").exists() && !data.join("master.key").exists());
    let again = start(&data, &sealing).await.expect("unwraps");
    assert_eq!(again.audit_public_key, audit_key);
    again.shutdown().await;
    // Another enclave build (another MRENCLAVE sealing key) cannot open it.
    std::fs::write(root.join("keys/_sgx_mrenclave"), [0x5b; 16]).unwrap();
    let err = refused(&data, &sealing).await;
    assert!(err.contains("master.gramine does not open"), "{err}");
}

#[tokio::test]
async fn sev_snp_sealing_without_the_guest_device_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let sealing = Sealing::SevSnp {
        device: dir.path().join("sev-guest"),
        family_id: false,
    };
    let err = refused(&dir.path().join("data"), &sealing).await;
    assert!(
        err.contains("deriving the sealing key") && err.contains("sev-guest"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ordinary_nv_index_in_place_of_the_epoch_counter_is_refused() {
    let _turn = TPM.lock().await;
    let index = 0x0150_0a06u32;
    // The operator defines a writable index where the counter would be (tpm2-tools, from
    // scripts/swtpm) and sets it to whatever the database's epoch needs.
    let port = swtpm().to_string().rsplit(':').next().unwrap().to_string();
    // Left from an earlier run on the same software TPM, if any.
    let _ = Command::new("tpm2_nvundefine")
        .env(
            "TPM2TOOLS_TCTI",
            format!("swtpm:host=127.0.0.1,port={port}"),
        )
        .args([&format!("{index:#x}"), "-C", "o"])
        .output();
    let status = Command::new("tpm2_nvdefine")
        .env(
            "TPM2TOOLS_TCTI",
            format!("swtpm:host=127.0.0.1,port={port}"),
        )
        .args([
            &format!("{index:#x}"),
            "-C",
            "o",
            "-s",
            "8",
            "-a",
            "ownerread|ownerwrite|authread|authwrite",
        ])
        .status()
        .expect("tpm2_nvdefine (installed by scripts/swtpm)");
    assert!(status.success());
    Tpm::open(&swtpm())
        .unwrap()
        .nv_write(index, &1u64.to_be_bytes())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let err = refused(&dir.path().join("data"), &sealing(swtpm(), index)).await;
    assert!(
        err.contains("not the CAS's monotonic epoch counter"),
        "{err}"
    );
}
