//! What the demo tells its user: each phase with its time, what was attested, which keys were
//! released to whom (from the verified audit log), the results as the custodian reads them, and
//! the commands to do it again by hand.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use cipherlake_cas::audit::verify_log;
use cipherlake_cas::client::CasClient;
use cipherlake_engine::output::{OutputFormat, write_batches};
use cipherlake_engine::script::query;
use cipherlake_engine::session::{SessionOptions, new_session};

use super::policy::{CUSTODIAN, NAME};
use crate::cmd::workload::cas_kms;

/// The result files the job writes, with the query that shows them.
const RESULTS: [(&str, &str); 2] = [
    (
        "trips_by_borough.parquet",
        "SELECT * FROM results ORDER BY trips DESC",
    ),
    (
        "busiest_pairs.parquet",
        "SELECT * FROM results ORDER BY trips DESC, pickup_zone, dropoff_zone LIMIT 5",
    ),
];

/// One timed phase.
pub struct Phase {
    /// What it did.
    pub name: &'static str,
    /// How long it took.
    pub elapsed: Duration,
    /// Details.
    pub detail: String,
}

/// The report, filled phase by phase.
pub struct Report {
    workdir: PathBuf,
    phases: Vec<Phase>,
    /// The sim measurement of this binary.
    pub measurement: String,
    /// The job's hash.
    pub job_hash: String,
    /// Attestation and key release of the job.
    pub attestation: Duration,
    /// What the job printed (its console setting applied).
    pub console: String,
    /// The results as the custodian reads them.
    pub results: String,
    /// Audit entries up to this sequence number predate this run.
    pub audit_since: u64,
    attestations: Vec<String>,
    releases: BTreeMap<(String, String), BTreeMap<String, u64>>,
    refusals: Vec<String>,
    audit_readers: Vec<String>,
}

impl Report {
    /// An empty report for `workdir`.
    pub fn new(workdir: &Path) -> Self {
        Report {
            workdir: workdir.to_path_buf(),
            phases: Vec::new(),
            measurement: String::new(),
            job_hash: String::new(),
            attestation: Duration::ZERO,
            console: String::new(),
            results: String::new(),
            audit_since: 0,
            attestations: Vec::new(),
            releases: BTreeMap::new(),
            refusals: Vec::new(),
            audit_readers: Vec::new(),
        }
    }

    /// Records a finished phase (and says so on stderr while the demo runs).
    pub fn phase(&mut self, phase: Phase) {
        eprintln!("[{:>7.2} s] {}", phase.elapsed.as_secs_f64(), phase.name);
        self.phases.push(phase);
    }

    /// Fetches, exports and verifies the audit log, and summarises this run's attestations and
    /// key releases (entries after [`Report::audit_since`]) from it. Returns the number of
    /// entries.
    pub async fn audit(&mut self, cas: &CasClient, audit_key: &[u8; 32]) -> anyhow::Result<u64> {
        let export = cas.audit().await?;
        let count = verify_log(&export, audit_key).context("the CAS audit log does not verify")?;
        let json = serde_json::to_vec_pretty(&export).context("encoding the audit log")?;
        super::write_atomically(&self.workdir.join("audit-log.json"), &json, 0o644)?;
        for entry in export.entries.iter().filter(|e| e.seq > self.audit_since) {
            let event = body(&entry.body);
            let text = |key: &str| event[key].as_str().unwrap_or("-").to_string();
            match event["event"].as_str() {
                Some("attestation-allowed") => self.attestations.push(format!(
                    "#{} {}/{} ({}): tee {}, measurement {}…, job {}",
                    entry.seq,
                    text("policy"),
                    text("service"),
                    text("operation"),
                    text("tee"),
                    text("measurement").chars().take(16).collect::<String>(),
                    text("job")
                )),
                Some("kms") if event["allowed"] == true => {
                    *self
                        .releases
                        .entry((text("principal"), text("key")))
                        .or_default()
                        .entry(text("op"))
                        .or_default() += 1;
                }
                Some("kms") => self.refusals.push(format!(
                    "#{} {} {} {}: {}",
                    entry.seq,
                    text("principal"),
                    text("op"),
                    text("key"),
                    text("reason")
                )),
                Some("attestation-denied") => self.refusals.push(format!(
                    "#{} attestation as {}/{}: {}",
                    entry.seq,
                    text("policy"),
                    text("service"),
                    event["reasons"]
                )),
                Some("audit-read") => {
                    self.audit_readers
                        .push(format!("#{} {}", entry.seq, text("reader")))
                }
                _ => {}
            }
        }
        Ok(count)
    }

    /// Prints the report on stdout.
    pub fn print(&self) {
        let w = self.workdir.display();
        let total: Duration = self.phases.iter().map(|p| p.elapsed).sum();
        println!("\ncipherlake demo: confidential NYC taxi analytics, simulation mode ({w})\n");
        println!("Phases ({:.2} s in all):", total.as_secs_f64());
        for phase in &self.phases {
            println!(
                "  {:>7.2} s  {:<44} {}",
                phase.elapsed.as_secs_f64(),
                phase.name,
                phase.detail
            );
        }
        println!("\nWhat was attested (sim TEE: measurement = SHA-384 of this executable):");
        println!("  measurement sha384:{}", self.measurement);
        println!("  job         {} (taxi-job.sql)", self.job_hash);
        for line in &self.attestations {
            println!("  {line}");
        }
        println!(
            "  attestation + key release of the job: {:.0} ms",
            self.attestation.as_secs_f64() * 1e3
        );
        println!(
            "\nWho used which key through the CAS KMS (services attested, users signed; master keys never left the CAS):"
        );
        for ((principal, key), ops) in &self.releases {
            let ops: Vec<String> = ops.iter().map(|(op, n)| format!("{op} ×{n}")).collect();
            println!("  {NAME}/{principal:<18} {key:<14} {}", ops.join(", "));
        }
        if !self.refusals.is_empty() {
            println!("\nRefused (from the audit log):");
            for line in &self.refusals {
                println!("  {line}");
            }
        }
        println!("\nWho read the audit log:");
        for line in &self.audit_readers {
            println!("  {line}");
        }
        println!("\nWhat the job printed (policy console setting: row-counts):");
        for line in self.console.lines() {
            println!("  {line}");
        }
        println!(
            "\nEncrypted results (Parquet modular encryption, encrypted footer, key results-key):"
        );
        for (file, _) in RESULTS {
            println!("  {w}/results/{file}");
        }
        println!("\nAs the custodian reads them:\n{}", self.results);
        println!("Do it again by hand (the demo has stopped its services):");
        println!("  cipherlake las --platform-key {w}/las/platform.key --socket {w}/las.sock &");
        println!("  cipherlake cas serve --data-dir {w}/cas --listen 127.0.0.1:8443 &");
        println!(
            "  export CIPHERLAKE_CAS_CERT={w}/cas/tls-cert.pem CIPHERLAKE_LAS_SOCKET={w}/las.sock"
        );
        println!(
            "  # decrypt the results as the custodian (a user of {NAME}: signs with its key, no attestation):"
        );
        println!(
            "  cipherlake parquet decrypt --kms cas:https://127.0.0.1:8443 --policy {NAME} --user {CUSTODIAN} --key {w}/custodian.key --in {w}/results --out {w}/results-plain"
        );
        println!("  # verify the audit log, exported or live:");
        println!(
            "  cipherlake audit verify --file {w}/audit-log.json --audit-key {w}/cas/audit-public-key"
        );
        println!(
            "  cipherlake audit verify --cas https://127.0.0.1:8443 --cas-cert {w}/cas/tls-cert.pem --audit-key {w}/cas/audit-public-key --policy {NAME} --user {CUSTODIAN} --key {w}/custodian.key --save-head {w}/audit-head.json"
        );
    }
}

fn body(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or_default()
}

/// Reads the result files through the CAS KMS as `custodian`, a CAS client signing as the
/// policy's custodian user.
pub async fn read_results(custodian: &CasClient, results: &Path) -> anyhow::Result<String> {
    let ctx = new_session(&SessionOptions {
        kms: Some(cas_kms(custodian)?),
        ..SessionOptions::default()
    });
    let mut out = Vec::new();
    for (file, sql) in RESULTS {
        let path = results.join(file);
        ctx.register_parquet(
            "results",
            path.to_string_lossy().as_ref(),
            Default::default(),
        )
        .await
        .with_context(|| format!("reading {}", path.display()))?;
        let batches = query(&ctx, sql).await?;
        out.extend_from_slice(format!("{file}:\n").as_bytes());
        write_batches(OutputFormat::Table, &batches, &mut out)?;
        ctx.deregister_table("results")?;
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
