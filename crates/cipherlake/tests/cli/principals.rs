//! The trust model through the binary, as an engineer who wants the data would try it: with the
//! binary, the CAS URL and certificate and the node's LAS socket, none of the four old leaks
//! works, no command obtains a service's release unless it performs that service's operation,
//! and people read only what their user grants allow.

use std::collections::BTreeSet;
use std::path::Path;

use super::run::{run, sha256_hex};
use super::support::{cipherlake, ok};
use super::testbed::{Testbed, path};

const SECRET: &str = "canary-secret-31c9";
const DATA: &str = "canary-data-77e0";

const JOB: &str = "CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '${DATA}';\n\
SELECT count(*) FROM trips WHERE name <> '${TOKEN}';\n\
COPY (SELECT name, fare FROM trips) TO '${OUT}/results.parquet' \
STORED AS PARQUET OPTIONS ('format.crypto.factory_options.footer_key' 'results-key');\n";

fn policy(bed: &Testbed, job: &str) -> String {
    let d = bed.dir.path();
    format!(
        "apiVersion: cipherlake/v1\nname: lake\npredecessor: null\nowners: [{owner}]\n\
         attestation:\n  tees: [{tee}]\n\
         services:\n\
         \x20 ingest:\n    operation: encrypt\n    measurements: [sha384:{m}]\n    kms_keys: {{ data-key: [wrap] }}\n\
         \x20 driver:\n    operation: run\n    measurements: [sha384:{m}]\n    jobs: [sha256:{job}]\n\
         \x20   env:\n      DATA: \"{data}\"\n      OUT: \"{out}\"\n      TOKEN: \"{{{{ secret.token }}}}\"\n\
         \x20   kms_keys: {{ data-key: [unwrap], results-key: [wrap] }}\n    console: row-counts\n\
         \x20 worker:\n    operation: worker\n    measurements: [sha384:{m}]\n    kms_keys: {{ data-key: [unwrap] }}\n\
         \x20 peek:\n    operation: run\n    measurements: [sha384:{m}]\n    jobs: [sha256:{peek}]\n    console: full\n\
         users:\n  custodian:\n    key: {custodian}\n    kms_keys: {{ results-key: [unwrap] }}\n\
         secrets:\n  token: {{ kind: ascii, value: \"{SECRET}\" }}\n\
         \x20 data-key: {{ kind: aes-256, generate: true }}\n\
         \x20 results-key: {{ kind: aes-256, generate: true }}\n",
        owner = bed.owner,
        tee = bed.tee(),
        custodian = bed.custodian,
        m = bed.measurement,
        peek = sha256_hex(b"SELECT 1"),
        data = d.join("data").display(),
        out = d.join("out").display(),
    )
}

/// A testbed with the policy applied, the raw trips encrypted by the ingest service and the
/// job run by the driver: results in `out/results.parquet`. Returns the job file.
fn pipeline(bed: &Testbed) -> std::path::PathBuf {
    let d = bed.dir.path();
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::create_dir_all(d.join("out")).unwrap();
    let job = d.join("job.sql");
    std::fs::write(&job, JOB).unwrap();
    bed.apply("lake.yaml", &policy(bed, &sha256_hex(JOB.as_bytes())));
    let plain = d.join("plain.parquet");
    ok(&[
        "sql",
        &format!(
            "COPY (SELECT * FROM (VALUES ('{DATA}', 10.5), ('bob', 20.0)) AS t(name, fare)) TO '{}' STORED AS PARQUET",
            plain.display()
        ),
    ]);
    let (success, _, stderr) = run(
        bed,
        &strs(&bed.encrypt_args("lake", "ingest", &plain, &d.join("data/trips.parquet"))),
    );
    assert!(success, "{stderr}");
    std::fs::remove_file(&plain).unwrap();
    let (success, stdout, stderr) = run(
        bed,
        &[
            "run",
            "--cas",
            &bed.url,
            "--policy",
            "lake",
            "--service",
            "driver",
            path(&job),
        ],
    );
    assert!(success, "{stderr}");
    assert!(
        !stdout.contains(DATA) && !stdout.contains(SECRET),
        "{stdout}"
    );
    job
}

/// `&str`s of `args`.
fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

fn kms(bed: &Testbed) -> String {
    format!("cas:{}", bed.url)
}

/// Asserts a usage error (exit 2) naming `--service`: the command has no such option.
fn no_service_option(bed: &Testbed, args: &[&str]) {
    let out = bed.command(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains("unexpected argument '--service'"),
        "{stderr}"
    );
}

/// Asserts a refusal (exit 1) whose message contains every one of `needles`.
fn refused(bed: &Testbed, args: &[&str], needles: &[&str]) -> String {
    let (success, stdout, stderr) = run(bed, args);
    assert!(!success, "{args:?} succeeded: {stdout}");
    for needle in needles {
        assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
    }
    for canary in [SECRET, DATA] {
        assert!(
            !stdout.contains(canary) && !stderr.contains(canary),
            "{canary} leaked"
        );
    }
    stderr
}

#[test]
fn decrypting_results_as_a_service_is_impossible() {
    // Leaks 1 and 2: `parquet decrypt --service custodian|ingest` decrypted the job's results
    // and the raw trips. Decrypting is a person's act: the command has no --service at all.
    let bed = Testbed::start();
    pipeline(&bed);
    let d = bed.dir.path();
    let kms = kms(&bed);
    for (service, input) in [
        ("custodian", "out/results.parquet"),
        ("ingest", "data/trips.parquet"),
    ] {
        no_service_option(
            &bed,
            &[
                "parquet",
                "decrypt",
                "--kms",
                &kms,
                "--policy",
                "lake",
                "--service",
                service,
                "--in",
                path(&d.join(input)),
                "--out",
                path(&d.join("stolen.parquet")),
            ],
        );
    }
    assert!(!d.join("stolen.parquet").exists());
    // As a user, the custodian reads the results, not the raw trips (no grant on data-key).
    let [u, user, k, key] = bed.as_custodian();
    let decrypt = |input: &str, out: &Path| {
        vec![
            "parquet".to_string(),
            "decrypt".into(),
            "--kms".into(),
            kms.clone(),
            "--policy".into(),
            "lake".into(),
            u.into(),
            user.into(),
            k.into(),
            key.into(),
            "--in".into(),
            path(&d.join(input)).into(),
            "--out".into(),
            path(out).into(),
        ]
    };
    let args = decrypt("data/trips.parquet", &d.join("raw.parquet"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(
        &bed,
        &args,
        &["data-key", "user:custodian", "not granted unwrap"],
    );
    assert!(!d.join("raw.parquet").exists(), "no half-written output");
    let args = decrypt("out/results.parquet", &d.join("clear.parquet"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (success, _, stderr) = run(&bed, &args);
    assert!(success, "{stderr}");
    // The ingest service's code cannot be asked to decrypt either: a user named ingest does not
    // exist, and the engineer has no custodian key.
    let stranger = d.join("stranger.key");
    ok(&["policy", "keygen", "--out", path(&stranger)]);
    let args: Vec<String> = decrypt("out/results.parquet", &d.join("x.parquet"))
        .into_iter()
        .map(|a| {
            if a == path(&bed.custodian_key) {
                path(&stranger).to_string()
            } else {
                a
            }
        })
        .collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&bed, &args, &["does not verify"]);
    let log = bed.audit_log();
    assert!(log.contains("\"principal\":\"user:custodian\""), "{log}");
}

#[test]
fn ad_hoc_sql_never_acts_as_a_service() {
    // Leak 3: `sql --kms cas: --service worker` printed trip data.
    let bed = Testbed::start();
    pipeline(&bed);
    let d = bed.dir.path();
    let kms = kms(&bed);
    let query = format!(
        "SELECT name FROM '{}'",
        d.join("data/trips.parquet").display()
    );
    no_service_option(
        &bed,
        &[
            "sql",
            "--kms",
            &kms,
            "--policy",
            "lake",
            "--service",
            "worker",
            &query,
        ],
    );
    for args in [
        vec![
            "bench",
            "taxi",
            "--data",
            path(d),
            "--kms",
            &kms,
            "--policy",
            "lake",
            "--service",
            "worker",
        ],
        vec![
            "parquet",
            "inspect",
            path(&d.join("data/trips.parquet")),
            "--kms",
            &kms,
            "--policy",
            "lake",
            "--service",
            "worker",
        ],
        vec![
            "ae",
            "decrypt-columns",
            "--db",
            "sqlite:/nonexistent.db",
            "--table",
            "t",
            "--columns",
            "c",
            "--cas",
            &bed.url,
            "--policy",
            "lake",
            "--service",
            "driver",
        ],
    ] {
        no_service_option(&bed, &args);
    }
    // Without a user key, --kms cas: is refused before anything is read.
    refused(
        &bed,
        &["sql", "--kms", &kms, "--policy", "lake", &query],
        &["--user"],
    );
    // The custodian user has no grant on the trips.
    let [u, user, k, key] = bed.as_custodian();
    refused(
        &bed,
        &[
            "sql", "--kms", &kms, "--policy", "lake", u, user, k, key, &query,
        ],
        &["data-key", "not granted unwrap"],
    );
}

#[test]
fn attest_is_a_probe_that_prints_names_and_sizes() {
    // Leak 4: `attest --service driver --job taxi-job.sql` passed the allow-list without running
    // the job and printed the driver's secrets. Now it binds `probe`: no certificate, no KMS
    // rights, and no values unless the service is debug in a sim policy.
    let bed = Testbed::start();
    let job = pipeline(&bed);
    let probe = [
        "attest",
        "--cas",
        &bed.url,
        "--policy",
        "lake",
        "--service",
        "driver",
        "--job",
        path(&job),
    ];
    let (success, stdout, stderr) = run(&bed, &probe);
    assert!(success, "{stderr}");
    assert!(
        stdout.contains("no certificate and no KMS rights"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("env TOKEN ({} bytes)", SECRET.len())),
        "{stdout}"
    );
    assert!(stdout.contains("kms data-key: unwrap"), "{stdout}");
    assert!(
        !stdout.contains(SECRET) && !stderr.contains(SECRET),
        "{stdout}"
    );
    let log = bed.audit_log();
    assert!(log.contains("\"event\":\"attestation-probed\""), "{log}");
    assert!(log.contains("\"values_released\":false"), "{log}");
    // A probe with a job not allow-listed is refused like the job would be.
    let other = bed.dir.path().join("other.sql");
    std::fs::write(&other, "SELECT 1").unwrap();
    refused(
        &bed,
        &[
            "attest",
            "--cas",
            &bed.url,
            "--policy",
            "lake",
            "--service",
            "driver",
            "--job",
            path(&other),
        ],
        &["job-not-allowed"],
    );
}

#[test]
fn every_command_attests_only_as_the_operation_it_performs() {
    let bed = Testbed::start();
    let job = pipeline(&bed);
    let d = bed.dir.path();
    let kms = kms(&bed);
    // run as the worker or ingest service: the evidence binds run, the services admit others.
    for service in ["worker", "ingest"] {
        refused(
            &bed,
            &[
                "run",
                "--cas",
                &bed.url,
                "--policy",
                "lake",
                "--service",
                service,
                path(&job),
            ],
            &["operation-mismatch", "binds operation run"],
        );
    }
    // A worker attesting as the driver, to take its job's grants.
    refused(
        &bed,
        &[
            "worker",
            "--cas",
            &bed.url,
            "--policy",
            "lake",
            "--service",
            "driver",
        ],
        &[
            "operation-mismatch",
            "binds operation worker",
            "admits only run",
        ],
    );
    // A worker serves only run services granted what it unwraps: not `peek`, which holds no
    // grant on data-key but prints everything (it would borrow the worker's grants).
    refused(
        &bed,
        &[
            "worker",
            "--cas",
            &bed.url,
            "--policy",
            "lake",
            "--clients",
            "peek",
        ],
        &[
            "--clients peek",
            "does not let this worker serve it",
            "allowed: driver",
        ],
    );
    // The encrypt commands attesting as the driver (which can unwrap) or the worker.
    refused(
        &bed,
        &[
            "datagen",
            "taxi",
            "--rows",
            "1000",
            "--out",
            path(&d.join("gen")),
            "--encrypt",
            "--footer-key",
            "data-key",
            "--kms",
            &kms,
            "--policy",
            "lake",
            "--service",
            "driver",
        ],
        &["operation-mismatch", "binds operation encrypt"],
    );
    refused(
        &bed,
        &strs(&bed.encrypt_args(
            "lake",
            "worker",
            &d.join("out/results.parquet"),
            &d.join("again.parquet"),
        )),
        &["operation-mismatch"],
    );
    // The ingest service encrypts, but it cannot read what it encrypts (re-encrypting an
    // encrypted file needs unwrap).
    refused(
        &bed,
        &strs(&bed.encrypt_args(
            "lake",
            "ingest",
            &d.join("data/trips.parquet"),
            &d.join("again.parquet"),
        )),
        &["data-key"],
    );
    assert!(!d.join("again.parquet").exists());
}

/// The subcommand paths of the binary (`["parquet", "decrypt"]`, …), from `--help`.
fn subcommands(prefix: &[&str]) -> Vec<Vec<String>> {
    let mut args: Vec<&str> = prefix.to_vec();
    args.push("--help");
    let help = String::from_utf8_lossy(&cipherlake(&args).stdout).into_owned();
    let mut out = Vec::new();
    let mut in_commands = false;
    for line in help.lines() {
        if line.starts_with("Commands:") {
            in_commands = true;
            continue;
        }
        if in_commands {
            let Some(name) = line
                .strip_prefix("  ")
                .and_then(|l| l.split_whitespace().next())
            else {
                break;
            };
            if name == "help" || line.starts_with("   ") {
                continue;
            }
            let mut path: Vec<String> = prefix.iter().map(|s| s.to_string()).collect();
            path.push(name.to_string());
            let refs: Vec<&str> = path.iter().map(String::as_str).collect();
            let nested = subcommands(&refs);
            if nested.is_empty() {
                out.push(path);
            } else {
                out.extend(nested);
            }
        }
    }
    out
}

#[test]
fn only_commands_that_perform_an_operation_take_a_service() {
    // Every subcommand whose help offers --service, walked from the binary itself: exactly the
    // ones that perform an operation (run, worker, the encrypt writers) or probe (attest).
    let all = subcommands(&[]);
    assert!(all.len() > 20, "{all:?}");
    let mut with_service = BTreeSet::new();
    let mut with_kms = BTreeSet::new();
    for command in &all {
        let mut args: Vec<&str> = command.iter().map(String::as_str).collect();
        args.push("--help");
        let help = String::from_utf8_lossy(&cipherlake(&args).stdout).into_owned();
        let name = command.join(" ");
        if help.contains("--service <SERVICE>") {
            with_service.insert(name.clone());
        }
        if help.contains("--kms <SPEC>") || help.contains("--cas <URL>") {
            with_kms.insert(name);
        }
    }
    let expected: BTreeSet<String> = ["attest", "datagen taxi", "parquet encrypt", "run", "worker"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(with_service, expected);
    // Every command that reaches the CAS KMS without --service acts as a user: it takes --user.
    for name in with_kms.difference(&expected) {
        let mut args: Vec<&str> = name.split(' ').collect();
        args.push("--help");
        let help = String::from_utf8_lossy(&cipherlake(&args).stdout).into_owned();
        let takes_user = help.contains("--user <NAME>");
        let operator_only =
            name.starts_with("cas ") || name.starts_with("policy ") || name.starts_with("audit ");
        assert!(
            takes_user || operator_only,
            "{name} reaches the CAS as neither user nor service"
        );
    }
}

#[test]
fn ae_cell_values_may_be_negative_numbers() {
    let cek = "00".repeat(32);
    let cell = ok(&[
        "ae",
        "cell",
        "encrypt",
        "--cek",
        &cek,
        "--type",
        "int",
        "--mode",
        "deterministic",
        "-1",
    ]);
    let value = ok(&[
        "ae",
        "cell",
        "decrypt",
        "--cek",
        &cek,
        "--type",
        "int",
        "--mode",
        "deterministic",
        cell.trim(),
    ]);
    assert_eq!(value.trim(), "-1");
}

#[test]
fn a_job_runs_on_vtpm_evidence_from_a_software_tpm() {
    // The whole pipeline (an encrypt service writes, the driver runs the job, the custodian
    // decrypts) with sim-vtpm: every workload quotes with the software TPM, the LAS makes the
    // HCL report, and the policy accepts only sim-vtpm.
    let bed = Testbed::start_sim_vtpm();
    pipeline(&bed);
    let log = bed.audit_log();
    assert!(log.contains("\"tee\":\"sim-vtpm\""), "{log}");
    assert!(!log.contains("\"tee\":\"sim\""), "{log}");
    // The same driver without the TPM produces sim evidence, which this policy refuses.
    let d = bed.dir.path();
    let mut command = bed.command(&[
        "run",
        "--cas",
        &bed.url,
        "--policy",
        "lake",
        "--service",
        "driver",
        path(&d.join("job.sql")),
    ]);
    let out = command.env_remove("CIPHERLAKE_TPM").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("tee-not-allowed"), "{stderr}");
}
