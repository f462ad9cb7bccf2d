//! A CAS and a LAS started as `cipherlake` processes on loopback, the LAS registered, and an
//! owner key: the operator's part of the trust flow, for tests of what comes after it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha384};

use super::support::ok;

/// A background process killed when dropped.
pub struct Background(pub Child);

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `cipherlake ARGS` in the background; its stderr goes to `stderr`.
pub fn spawn(args: &[&str], stderr: impl Into<Stdio>) -> Background {
    Background(
        Command::new(env!("CARGO_BIN_EXE_cipherlake"))
            .args(args)
            .env_remove("RUST_LOG")
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("the binary starts"),
    )
}

/// Waits (bounded) until `ready` holds.
pub fn wait_for(what: &str, ready: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(
            Instant::now() < deadline,
            "{what} did not come up within 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A path as a command-line argument.
pub fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// The running services and the custodian's owner key, all under one temporary directory.
pub struct Testbed {
    /// The temporary directory.
    pub dir: tempfile::TempDir,
    /// The CAS URL.
    pub url: String,
    /// The CAS data directory.
    pub data: PathBuf,
    /// The CAS certificate to pin.
    pub cert: PathBuf,
    /// The LAS socket.
    pub socket: PathBuf,
    /// The LAS platform public key.
    pub platform: String,
    /// The owner's private key file.
    pub owner_key: PathBuf,
    /// The owner's public key (`ed25519:HEX`).
    pub owner: String,
    /// The custodian user's private key file (a user of the test policies).
    pub custodian_key: PathBuf,
    /// The custodian user's public key.
    pub custodian: String,
    /// The sim measurement of the binary under test, hex.
    pub measurement: String,
    /// sim-vtpm: the software TPM the LAS and the workloads use (`tcp:HOST:PORT`).
    pub tpm: Option<String>,
    cas: Background,
    _las: Background,
}

impl Testbed {
    /// Starts the CAS and the LAS, registers the LAS platform and creates an owner key.
    pub fn start() -> Self {
        Self::start_with(&[], Stdio::null())
    }

    /// As [`Testbed::start`]; `cas_flags` go before `cas serve` (e.g. `-vv`) and the CAS's
    /// stderr goes to `cas_stderr`. The CAS gets its own evidence from the LAS.
    pub fn start_with(cas_flags: &[&str], cas_stderr: impl Into<Stdio>) -> Self {
        Self::start_full(cas_flags, &[], cas_stderr)
    }

    /// As [`Testbed::start`], with `serve_flags` added to `cas serve` (e.g. `--cert-ttl`).
    pub fn start_serving_with(serve_flags: &[&str]) -> Self {
        Self::start_full(&[], serve_flags, Stdio::null())
    }

    /// As [`Testbed::start`], in sim-vtpm: the LAS makes HCL reports over the software TPM
    /// of `scripts/swtpm` (`CIPHERLAKE_TEST_SWTPM`) and every command quotes with it.
    pub fn start_sim_vtpm() -> Self {
        let tpm = std::env::var("CIPHERLAKE_TEST_SWTPM").expect(
            "CIPHERLAKE_TEST_SWTPM is not set: run the tests through scripts/test, which starts \
             and provisions a software TPM (scripts/swtpm)",
        );
        Self::start_tpm(&[], &[], Stdio::null(), Some(tpm))
    }

    fn start_full(cas_flags: &[&str], serve_flags: &[&str], cas_stderr: impl Into<Stdio>) -> Self {
        Self::start_tpm(cas_flags, serve_flags, cas_stderr, None)
    }

    fn start_tpm(
        cas_flags: &[&str],
        serve_flags: &[&str],
        cas_stderr: impl Into<Stdio>,
        tpm: Option<String>,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let platform_key = d.join("platform.key");
        let platform = ok(&["las", "init-key", path(&platform_key)])
            .trim()
            .to_string();
        let socket = d.join("las.sock");
        let mut las_args = vec![
            "las",
            "--platform-key",
            path(&platform_key),
            "--socket",
            path(&socket),
        ];
        if let Some(tpm) = &tpm {
            las_args.extend(["--tpm", tpm.as_str()]);
        }
        let las = spawn(&las_args, Stdio::null());
        wait_for("the LAS", || socket.exists());

        let (data, cert) = (d.join("cas"), d.join("cas/tls-cert.pem"));
        let port = free_port();
        let listen = format!("127.0.0.1:{port}");
        let mut args = cas_flags.to_vec();
        args.extend([
            "cas",
            "serve",
            "--data-dir",
            path(&data),
            "--listen",
            &listen,
            "--las-socket",
            path(&socket),
        ]);
        args.extend(serve_flags);
        let cas = spawn(&args, cas_stderr);
        wait_for("the CAS", || {
            cert.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        let url = format!("https://{listen}");
        ok(&[
            "cas",
            "register-platform",
            "--cas",
            &url,
            "--cas-cert",
            path(&cert),
            "--token-file",
            path(&data.join("operator.token")),
            &platform,
        ]);
        let owner_key = d.join("owner.key");
        let owner = ok(&["policy", "keygen", "--out", path(&owner_key)])
            .trim()
            .to_string();
        let custodian_key = d.join("custodian.key");
        let custodian = ok(&["policy", "keygen", "--out", path(&custodian_key)])
            .trim()
            .to_string();
        let measurement = hex::encode(Sha384::digest(
            std::fs::read(env!("CARGO_BIN_EXE_cipherlake")).unwrap(),
        ));
        Testbed {
            dir,
            url,
            data,
            cert,
            socket,
            platform,
            owner_key,
            owner,
            custodian_key,
            custodian,
            measurement,
            tpm,
            cas,
            _las: las,
        }
    }

    /// Sends SIGTERM to the CAS and waits (bounded) for it to exit.
    pub fn stop_cas(&mut self) -> std::process::ExitStatus {
        let pid = self.cas.0.id().to_string();
        let sent = Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        assert!(sent.success());
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.cas.0.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "the CAS did not stop on SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Writes `text` to `file` in the directory and applies it as a policy.
    pub fn apply(&self, file: &str, text: &str) -> PathBuf {
        let file = self.dir.path().join(file);
        std::fs::write(&file, text).unwrap();
        ok(&[
            "policy",
            "apply",
            path(&file),
            "--key",
            path(&self.owner_key),
            "--cas",
            &self.url,
            "--cas-cert",
            path(&self.cert),
        ]);
        file
    }

    /// `cipherlake ARGS` with the CAS certificate and LAS socket in its environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cipherlake"));
        command
            .args(args)
            .env_remove("RUST_LOG")
            .env("CIPHERLAKE_CAS_CERT", &self.cert)
            .env("CIPHERLAKE_LAS_SOCKET", &self.socket);
        match &self.tpm {
            Some(tpm) => command.env("CIPHERLAKE_TPM", tpm),
            None => command.env_remove("CIPHERLAKE_TPM"),
        };
        command
    }

    /// The evidence kind the testbed's workloads produce, as a policy lists it.
    pub fn tee(&self) -> &'static str {
        if self.tpm.is_some() {
            "sim-vtpm"
        } else {
            "sim"
        }
    }

    /// The audit log as text (`audit show`, as the operator).
    pub fn audit_log(&self) -> String {
        ok(&[
            "audit",
            "show",
            "--cas",
            &self.url,
            "--cas-cert",
            path(&self.cert),
            "--token-file",
            path(&self.data.join("operator.token")),
        ])
    }

    /// `parquet encrypt` of `input` into `output` under `data-key`, attested as the encrypt
    /// service `service` of `policy`.
    pub fn encrypt_args(
        &self,
        policy: &str,
        service: &str,
        input: &Path,
        output: &Path,
    ) -> Vec<String> {
        [
            "parquet",
            "encrypt",
            "--kms",
            &format!("cas:{}", self.url),
            "--policy",
            policy,
            "--service",
            service,
            "--footer-key",
            "data-key",
            "--in",
            path(input),
            "--out",
            path(output),
        ]
        .map(String::from)
        .to_vec()
    }

    /// `--user custodian --key FILE`: the custodian user's arguments.
    pub fn as_custodian(&self) -> [&str; 4] {
        ["--user", "custodian", "--key", path(&self.custodian_key)]
    }
}
