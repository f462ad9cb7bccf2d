//! `cipherlake run`: a job attests with its hash bound, receives its configuration and KMS
//! rights, reads encrypted data through the CAS KMS and writes encrypted results; a refused job
//! stops before any key is used; secrets and data values reach no log line and no plaintext
//! file.

use std::path::Path;

use super::support::ok;
use super::testbed::{Testbed, path};

const SECRET: &str = "canary-secret-5d1e";
const DATA: &str = "canary-data-91b2";

const JOB: &str = "CREATE EXTERNAL TABLE people STORED AS PARQUET LOCATION '${DATA}';\n\
SELECT name, salary FROM people WHERE name <> '${TOKEN}';\n\
COPY (SELECT name, salary * 2 AS doubled FROM people) TO '${OUT}/doubled.parquet' \
STORED AS PARQUET OPTIONS ('format.crypto.factory_options.footer_key' 'results-key');\n";

fn policy(bed: &Testbed, job_sha256: &str, tees: &str, predecessor: &str) -> String {
    let d = bed.dir.path();
    format!(
        "apiVersion: cipherlake/v1\nname: pipeline\npredecessor: {predecessor}\nowners: [{owner}]\n\
         attestation:\n  tees: [{tees}]\n\
         services:\n\
         \x20 ingest:\n    operation: encrypt\n    measurements: [sha384:{m}]\n    kms_keys: {{ data-key: [wrap] }}\n\
         \x20 driver:\n    operation: run\n    measurements: [sha384:{m}]\n    jobs: [sha256:{job_sha256}]\n\
         \x20   env:\n      DATA: \"{data}\"\n      OUT: \"{out}\"\n      TOKEN: \"{{{{ secret.token }}}}\"\n\
         \x20   kms_keys: {{ data-key: [unwrap], results-key: [wrap] }}\n    console: row-counts\n\
         users:\n  custodian:\n    key: {custodian}\n    kms_keys: {{ results-key: [unwrap] }}\n\
         secrets:\n  token: {{ kind: ascii, value: \"{SECRET}\" }}\n\
         \x20 data-key: {{ kind: aes-256, generate: true }}\n\
         \x20 results-key: {{ kind: aes-256, generate: true }}\n",
        owner = bed.owner,
        custodian = bed.custodian,
        m = bed.measurement,
        data = d.join("data").display(),
        out = d.join("out").display(),
    )
}

/// SHA-256 of `bytes`, hex (a job's allow-list entry).
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Runs a command of the testbed; returns (success, stdout, stderr).
pub fn run(bed: &Testbed, args: &[&str]) -> (bool, String, String) {
    let out = bed.command(args).output().expect("the binary runs");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn kms_entries(bed: &Testbed) -> usize {
    bed.audit_log().matches("\"event\":\"kms\"").count()
}

/// Every regular file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let kind = entry.file_type().unwrap();
        if kind.is_dir() {
            out.extend(files(&entry.path()));
        } else if kind.is_file() {
            out.push(entry.path());
        }
    }
    out
}

#[test]
fn an_attested_job_reads_and_writes_encrypted_data_and_leaks_nothing() {
    let bed = Testbed::start();
    let d = bed.dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::create_dir_all(d.join("out")).unwrap();
    let job = d.join("job.sql");
    std::fs::write(&job, JOB).unwrap();
    let policy_file = bed.apply(
        "pipeline.yaml",
        &policy(&bed, &sha256_hex(JOB.as_bytes()), "sim", "null"),
    );
    let kms = format!("cas:{}", bed.url);

    // The custodian's ingest tool encrypts the data with a CAS-held key.
    let plain = d.join("plain.parquet");
    ok(&[
        "sql",
        &format!(
            "COPY (SELECT * FROM (VALUES ('{DATA}', 100), ('bob', 200), ('carol', 300)) AS t(name, salary)) \
             TO '{}' STORED AS PARQUET",
            plain.display()
        ),
    ]);
    let (success, _, stderr) = run(
        &bed,
        &bed.encrypt_args("pipeline", "ingest", &plain, &d.join("data/people.parquet"))
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
    );
    assert!(success, "{stderr}");
    std::fs::remove_file(&plain).unwrap();

    // The job: row counts only on the console, at -vv, with the secret used in a statement.
    let run_job = [
        "run",
        "-vv",
        "--cas",
        &bed.url,
        "--policy",
        "pipeline",
        "--service",
        "driver",
        path(&job),
    ];
    let (success, stdout, stderr) = run(&bed, &run_job);
    assert!(success, "{stderr}");
    assert_eq!(
        stdout,
        "statement 1: done\nstatement 2: 3 row(s)\nstatement 3: 1 row(s)\n"
    );
    assert!(stderr.contains("ran as an attested workload"), "{stderr}");
    for canary in [SECRET, DATA] {
        let leaks: Vec<&str> = stdout
            .lines()
            .chain(stderr.lines())
            .filter(|line| line.contains(canary))
            .collect();
        assert!(leaks.is_empty(), "{canary} leaked: {leaks:#?}");
    }

    // Decrypting the job's result as a person: a user of the policy, through the CAS KMS.
    let results = d.join("out/doubled.parquet");
    let decrypt_as = |user: &str, key: &Path, out: &Path| {
        run(
            &bed,
            &[
                "parquet",
                "decrypt",
                "--kms",
                &kms,
                "--policy",
                "pipeline",
                "--user",
                user,
                "--key",
                path(key),
                "--in",
                path(&results),
                "--out",
                path(out),
            ],
        )
    };

    // The owner's key is not the custodian's: the CAS refuses the signature, and says so.
    let (success, _, stderr) = decrypt_as("custodian", &bed.owner_key, &d.join("stolen.parquet"));
    assert!(!success);
    assert!(
        stderr.contains("results-key") && stderr.contains("does not verify"),
        "{stderr}"
    );
    assert!(!d.join("stolen.parquet").exists());

    // The custodian decrypts the results: the job's numbers.
    let clear = d.join("clear.parquet");
    let (success, _, stderr) = decrypt_as("custodian", &bed.custodian_key, &clear);
    assert!(success, "{stderr}");
    let rows = ok(&[
        "sql",
        "--format",
        "csv",
        &format!(
            "SELECT name, doubled FROM '{}' ORDER BY name",
            clear.display()
        ),
    ]);
    assert_eq!(
        rows,
        format!("name,doubled\nbob,400\n{DATA},200\ncarol,600\n")
    );
    std::fs::remove_file(&clear).unwrap();

    // No file written during the run holds either canary in the clear: not the CAS database,
    // not the encrypted data or results (the policy file is the custodian's input).
    for file in files(d).into_iter().filter(|f| *f != policy_file) {
        let bytes = std::fs::read(&file).unwrap();
        for canary in [SECRET, DATA] {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{canary} in {}",
                file.display()
            );
        }
    }
    let log = bed.audit_log();
    assert!(!log.contains(SECRET) && !log.contains(DATA));

    // A job changed by one byte is refused before any key is released.
    let before = kms_entries(&bed);
    let tampered = d.join("tampered.sql");
    std::fs::write(&tampered, JOB.replace("salary * 2", "salary * 3")).unwrap();
    let (success, _, stderr) = run(
        &bed,
        &[
            "run",
            "--cas",
            &bed.url,
            "--policy",
            "pipeline",
            "--service",
            "driver",
            path(&tampered),
        ],
    );
    assert!(!success);
    assert!(stderr.contains("job"), "{stderr}");
    assert_eq!(kms_entries(&bed), before, "no key used by a refused job");

    // A policy that does not list sim refuses the job, with the CAS's reason.
    let hash = ok(&["policy", "hash", path(&policy_file)]);
    bed.apply(
        "pipeline.yaml",
        &policy(&bed, &sha256_hex(JOB.as_bytes()), "sgx", hash.trim()),
    );
    let (success, _, stderr) = run(&bed, &run_job);
    assert!(!success);
    assert!(stderr.contains("sim"), "{stderr}");
    assert_eq!(kms_entries(&bed), before);

    // An unreachable CAS stops the job.
    let (success, _, stderr) = run(
        &bed,
        &[
            "run",
            "--cas",
            "https://127.0.0.1:1",
            "--policy",
            "pipeline",
            "--service",
            "driver",
            path(&job),
        ],
    );
    assert!(!success);
    assert!(stderr.starts_with("error: "), "{stderr}");
}
