//! Distributed runs through the binary: attested `cipherlake worker` processes, `run
//! --workers` and `--workers-from-cas` giving the single-process results, a worker whose
//! attestation is refused, a worker killed mid-query (the job fails in bounded time naming it)
//! and restarted (it re-attests and the next job succeeds), and no canary in any log or file.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use super::run::{files, run, sha256_hex};
use super::testbed::{Background, Testbed, path, wait_for};

const SECRET: &str = "canary-secret-77c4";
const DATA: &str = "canary-data-0a9e";

/// The job: results compared between runs.
const JOB: &str = "SET distributed.file_scan_config_bytes_per_partition = 65536;\n\
CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '${TRIPS}';\n\
CREATE EXTERNAL TABLE people STORED AS PARQUET LOCATION '${PEOPLE}';\n\
SELECT VendorID, count(*), round(sum(total_amount), 2) FROM trips WHERE CAST(VendorID AS VARCHAR) <> '${VENDOR}' GROUP BY 1 ORDER BY 1;\n\
SELECT passenger_count, CAST(round(trip_distance) AS INT) AS d, count(*) AS c FROM trips GROUP BY 1, 2 ORDER BY c DESC, 1, 2 LIMIT 5;\n\
SELECT name, count(*) FROM people GROUP BY name ORDER BY name;\n";

/// A job whose work is on the workers for several seconds (in a debug build): four salted
/// chains of 30 nested SHA-256 per row, in the scan stage; the driver only sums counts.
fn heavy_job() -> String {
    let conjuncts: Vec<String> = (0..4)
        .map(|salt| {
            let mut e = format!("concat(CAST(tpep_pickup_datetime AS VARCHAR), '{salt}')");
            for _ in 0..30 {
                e = format!("sha256({e})");
            }
            format!("{e} <> sha256('')")
        })
        .collect();
    format!(
        "SET distributed.file_scan_config_bytes_per_partition = 65536;\n\
         CREATE EXTERNAL TABLE trips STORED AS PARQUET LOCATION '${{TRIPS}}';\n\
         SELECT count(*) FROM trips WHERE {};\n",
        conjuncts.join(" AND ")
    )
}

fn policy(bed: &Testbed, worker_measurement: &str) -> String {
    let d = bed.dir.path();
    format!(
        "apiVersion: cipherlake/v1\nname: fleet\npredecessor: null\nowners: [{owner}]\n\
         attestation:\n  tees: [sim]\n\
         services:\n\
         \x20 ingest:\n    operation: encrypt\n    measurements: [sha384:{m}]\n    kms_keys: {{ data-key: [wrap] }}\n\
         \x20 driver:\n    operation: run\n    measurements: [sha384:{m}]\n    jobs: [sha256:{job}, sha256:{heavy}]\n\
         \x20   env:\n      TRIPS: \"{trips}\"\n      PEOPLE: \"{people}\"\n      VENDOR: \"{{{{ secret.vendor }}}}\"\n\
         \x20   kms_keys: {{ data-key: [unwrap] }}\n    console: full\n\
         \x20 worker:\n    operation: worker\n    measurements: [sha384:{worker_measurement}]\n    kms_keys: {{ data-key: [unwrap] }}\n\
         secrets:\n  vendor: {{ kind: ascii, value: \"{SECRET}\" }}\n\
         \x20 data-key: {{ kind: aes-256, generate: true }}\n",
        owner = bed.owner,
        m = bed.measurement,
        job = sha256_hex(JOB.as_bytes()),
        heavy = sha256_hex(heavy_job().as_bytes()),
        trips = d.join("trips").display(),
        people = d.join("people").display(),
    )
}

/// A worker process and the URL it printed.
struct Worker {
    url: String,
    process: Background,
}

/// Starts `cipherlake -vv worker` (stderr to `log`); waits for its URL line.
fn start_worker(bed: &Testbed, listen: &str, log: &Path) -> Result<Worker, String> {
    let log_file = std::fs::File::create(log).unwrap();
    let mut child: Child = bed
        .command(&[
            "-vv",
            "worker",
            "--cas",
            &bed.url,
            "--policy",
            "fleet",
            "--listen",
            listen,
            "--memory-limit",
            "32",
            "--spill-dir",
            path(&bed.dir.path().join("spill")),
            "--ready-file",
            path(&log.with_extension("ready")),
        ])
        .stdout(Stdio::piped())
        .stderr(log_file)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    match line
        .strip_prefix("worker ")
        .and_then(|l| l.strip_suffix(" serving\n"))
    {
        Some(url) => Ok(Worker {
            url: url.trim_end_matches('/').to_owned(),
            process: Background(child),
        }),
        None => {
            let status = child.wait().unwrap();
            Err(format!(
                "{status}: {}",
                std::fs::read_to_string(log).unwrap()
            ))
        }
    }
}

fn host_port(url: &str) -> &str {
    url.strip_prefix("https://").unwrap()
}

/// The arguments of `cipherlake -vv run` of `job` as the driver with `extra` flags.
fn driver<'a>(bed: &'a Testbed, job: &'a Path, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "run",
        "-vv",
        "--cas",
        &bed.url,
        "--policy",
        "fleet",
        "--service",
        "driver",
    ];
    args.extend(extra);
    args.push(path(job));
    args
}

/// Runs `job` as the driver with `extra` flags; returns (success, stdout, stderr).
fn run_job(bed: &Testbed, job: &Path, extra: &[&str]) -> (bool, String, String) {
    run(bed, &driver(bed, job, extra))
}

/// Runs `cipherlake ARGS` in the testbed's environment and asserts success.
fn succeeds(bed: &Testbed, args: &[&str]) {
    let (success, _, stderr) = run(bed, args);
    assert!(success, "{stderr}");
}

/// CPU time (user + system, clock ticks) the process `pid` has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name: state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    field(14).unwrap_or(0) + field(15).unwrap_or(0)
}

/// Generates the encrypted data as the ingest service.
fn ingest(bed: &Testbed) {
    let d = bed.dir.path();
    let kms = format!("cas:{}", bed.url);
    let ingest = [
        "--kms",
        &kms,
        "--policy",
        "fleet",
        "--service",
        "ingest",
        "--footer-key",
        "data-key",
    ];
    let trips = d.join("trips");
    let mut args = vec![
        "datagen",
        "taxi",
        "--rows",
        "200k",
        "--files",
        "4",
        "--out",
        path(&trips),
        "--encrypt",
    ];
    args.extend(ingest);
    succeeds(bed, &args);
    let plain = d.join("people-plain.parquet");
    super::support::ok(&[
        "sql",
        &format!(
            "COPY (SELECT '{DATA}' AS name FROM generate_series(1, 3) UNION ALL SELECT 'bob') TO '{}' STORED AS PARQUET",
            plain.display()
        ),
    ]);
    std::fs::create_dir_all(d.join("people")).unwrap();
    let people = d.join("people/part-0.parquet");
    let mut args = vec![
        "parquet",
        "encrypt",
        "--in",
        path(&plain),
        "--out",
        path(&people),
    ];
    args.extend(ingest);
    succeeds(bed, &args);
    std::fs::remove_file(&plain).unwrap();
}

#[test]
fn workers_run_jobs_like_one_process_and_fail_cleanly() {
    let bed = Testbed::start();
    let d = bed.dir.path();
    std::fs::create_dir_all(d.join("spill")).unwrap();
    bed.apply("fleet.yaml", &policy(&bed, &bed.measurement));
    ingest(&bed);
    let job = d.join("job.sql");
    std::fs::write(&job, JOB).unwrap();
    let heavy = d.join("heavy.sql");
    std::fs::write(&heavy, heavy_job()).unwrap();

    let w1 = start_worker(&bed, "127.0.0.1:0", &d.join("worker-1.log")).unwrap();
    let w2 = start_worker(&bed, "127.0.0.1:0", &d.join("worker-2.log")).unwrap();
    // Attested, serving and registered: the ready file (a readiness probe's) holds the URL.
    wait_for("worker-1's ready file", || {
        std::fs::read_to_string(d.join("worker-1.ready"))
            .is_ok_and(|u| u.trim().trim_end_matches('/') == w1.url)
    });

    // Single process, a fixed list, and the CAS's list give the same results.
    let (success, single, stderr) = run_job(&bed, &job, &[]);
    assert!(success, "{stderr}");
    assert!(
        single.contains(DATA),
        "the full console shows the rows: {single}"
    );
    let list = format!("{},{}", host_port(&w1.url), host_port(&w2.url));
    let (success, listed, stderr) = run_job(&bed, &job, &["--workers", &list]);
    assert!(success, "{stderr}");
    assert_eq!(single, listed);
    let (success, followed, stderr) = run_job(&bed, &job, &["--workers-from-cas"]);
    assert!(success, "{stderr}");
    assert_eq!(single, followed);
    let audit = bed.audit_log();
    let worker_unwraps = audit
        .lines()
        .filter(|l| {
            l.contains("\"principal\":\"service:worker\"") && l.contains("\"op\":\"unwrap\"")
        })
        .count();
    assert!(
        worker_unwraps > 0,
        "the workers unwrap data keys with their own certificates: {audit}"
    );

    // A worker killed mid-query: the job fails within a bounded time, naming a worker.
    let busy_before = cpu_ticks(w1.process.0.id());
    let mut heavy_run = bed
        .command(&driver(&bed, &heavy, &["--workers", &list]))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Mid-query: the worker to kill has spent a second of CPU on the job's stage.
    wait_for("the heavy stage on the worker", || {
        cpu_ticks(w1.process.0.id()) >= busy_before + 100
    });
    assert!(
        heavy_run.try_wait().unwrap().is_none(),
        "the heavy query is still running"
    );
    let Worker {
        url: killed,
        process: mut victim,
    } = w1;
    victim.0.kill().unwrap();
    let killed_at = Instant::now();
    let status = loop {
        if let Some(status) = heavy_run.try_wait().unwrap() {
            break status;
        }
        if killed_at.elapsed() > Duration::from_secs(60) {
            let _ = heavy_run.kill();
            let mut stderr = String::new();
            std::io::Read::read_to_string(&mut heavy_run.stderr.take().unwrap(), &mut stderr)
                .unwrap();
            panic!("the driver hangs after a worker died:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut heavy_run.stderr.take().unwrap(), &mut stderr).unwrap();
    assert!(!status.success());
    assert!(stderr.contains("worker https://127.0.0.1:"), "{stderr}");
    eprintln!(
        "killed worker {killed}: the job failed after {:?}",
        killed_at.elapsed()
    );

    // Restarted on its port, the worker re-attests, registers, and the next job succeeds.
    let w1 = start_worker(&bed, host_port(&killed), &d.join("worker-1b.log")).unwrap();
    assert_eq!(w1.url, killed);
    let (success, again, stderr) = run_job(&bed, &job, &["--workers", &list]);
    assert!(success, "{stderr}");
    assert_eq!(single, again);

    // No canary in any file written (logs, CAS state, spills); the policy is the custodian's.
    drop((w1, w2));
    for file in files(d).into_iter().filter(|f| !f.ends_with("fleet.yaml")) {
        let bytes = std::fs::read(&file).unwrap();
        for canary in [SECRET, DATA] {
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{} contains {canary}",
                file.display()
            );
        }
    }
}

#[test]
fn a_worker_whose_attestation_is_refused_does_not_start() {
    let bed = Testbed::start();
    bed.apply("fleet.yaml", &policy(&bed, &"0".repeat(96)));
    let err = start_worker(&bed, "127.0.0.1:0", &bed.dir.path().join("worker.log"))
        .err()
        .expect("the worker must not start");
    assert!(err.contains("exit status: 1"), "{err}");
    assert!(
        !bed.dir.path().join("worker.ready").exists(),
        "a refused worker never reports ready"
    );
    assert!(
        err.contains("the worker cannot start without a successful attestation")
            && err.contains("measurement"),
        "{err}"
    );
}

/// Stops the cluster in a workdir when dropped (also when the test fails).
struct ClusterGuard<'a>(&'a Path);

impl Drop for ClusterGuard<'_> {
    fn drop(&mut self) {
        let _ = super::support::cipherlake(&["cluster", "down", "--workdir", path(self.0)]);
    }
}

#[test]
fn cluster_up_serves_jobs_and_down_stops_every_process() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let workdir = d.join("cluster");
    let job = d.join("job.sql");
    std::fs::write(
        &job,
        "SET distributed.file_scan_config_bytes_per_partition = 4096;\n\
         SELECT name, count(*) AS n FROM 'people' GROUP BY name ORDER BY name;\n",
    )
    .unwrap();
    super::support::ok(&[
        "sql",
        &format!(
            "COPY (SELECT CASE WHEN i % 3 = 0 THEN 'ann' ELSE 'bob' END AS name FROM generate_series(1, 3000) AS t(i)) TO '{}' STORED AS PARQUET",
            d.join("people/part-0.parquet").display()
        ),
    ]);
    let _guard = ClusterGuard(&workdir);
    let up = super::support::ok(&[
        "cluster",
        "up",
        "--workers",
        "2",
        "--workdir",
        path(&workdir),
        "--job",
        path(&job),
    ]);
    assert_eq!(
        up.matches("attested as local-cluster/worker").count(),
        2,
        "{up}"
    );
    let again = super::support::cipherlake(&["cluster", "up", "--workdir", path(&workdir)]);
    assert!(
        !again.status.success(),
        "a second cluster in the same workdir is refused"
    );

    // The environment `up` wrote is all a driver needs.
    let env = std::fs::read_to_string(workdir.join("cluster.env")).unwrap();
    let mut run = std::process::Command::new(env!("CARGO_BIN_EXE_cipherlake"));
    run.args(["run", "--workers-from-cas", path(&job)])
        .current_dir(d)
        .env_remove("RUST_LOG");
    for line in env.lines() {
        let (name, value) = line
            .strip_prefix("export ")
            .unwrap()
            .split_once('=')
            .unwrap();
        run.env(name, value);
    }
    let out = run.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("| ann  | 1000 |") && stdout.contains("| bob  | 2000 |"),
        "{stdout}"
    );

    let list: serde_json::Value =
        serde_json::from_slice(&std::fs::read(workdir.join("cluster.json")).unwrap()).unwrap();
    let pids: Vec<u64> = list["processes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["pid"].as_u64().unwrap())
        .collect();
    assert_eq!(pids.len(), 4, "LAS, CAS and two workers");
    let down = super::support::ok(&["cluster", "down", "--workdir", path(&workdir)]);
    assert!(down.contains("stopped (4 processes)"), "{down}");
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        assert!(
            stat.is_empty()
                || stat
                    .rsplit(')')
                    .next()
                    .unwrap()
                    .trim_start()
                    .starts_with('Z'),
            "process {pid} still runs"
        );
    }
    assert!(!workdir.join("cluster.json").exists());
}

#[test]
fn a_worker_renews_its_certificate_before_it_expires() {
    // Certificates live 10 s: a job after the first one expired runs only if the worker
    // re-attested (peers refuse an expired certificate, and so does the CAS KMS).
    let bed = Testbed::start_serving_with(&["--cert-ttl", "10"]);
    let d = bed.dir.path();
    std::fs::create_dir_all(d.join("spill")).unwrap();
    bed.apply("fleet.yaml", &policy(&bed, &bed.measurement));
    ingest(&bed);
    let job = d.join("job.sql");
    std::fs::write(&job, JOB).unwrap();
    let worker = start_worker(&bed, "127.0.0.1:0", &d.join("worker.log")).unwrap();
    // Each renewal comes when a third of the certificate's life is left (~6.7 s after it was
    // issued): after the second, the first certificate has expired.
    wait_for("two certificate renewals", || {
        std::fs::read_to_string(d.join("worker.log"))
            .is_ok_and(|log| log.matches("worker certificate renewed").count() >= 2)
    });
    let (success, stdout, stderr) = run_job(&bed, &job, &["--workers", host_port(&worker.url)]);
    assert!(success, "{stderr}");
    assert!(stdout.contains(DATA), "{stdout}");
    let log = std::fs::read_to_string(d.join("worker.log")).unwrap();
    assert!(log.contains("worker certificate renewed"), "{log}");
    let attestations = bed
        .audit_log()
        .lines()
        .filter(|l| l.contains("attestation-allowed") && l.contains("\"service\":\"worker\""))
        .count();
    assert!(attestations >= 2, "the worker re-attested: {attestations}");
}
