//! `cipherlake ae` custodian commands and `cipherlake sql --database` on SQLite and on the
//! PostgreSQL server that scripts/test starts (CIPHERLAKE_TEST_POSTGRES_URL).

use std::process::{Command, Output};

use cipherlake_engine::sqldb::conn::Conn;

use super::support::fails;
use super::testbed::{Testbed, path};

fn cmk_pem() -> String {
    concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/fixtures/always-encrypted/always-encrypted.pem"
    )
    .to_owned()
}

/// Runs `cipherlake ARGS` with the database URL in CIPHERLAKE_DB (so no password is on the
/// command line); asserts success and returns stdout.
fn ok_db(db: &str, args: &[&str]) -> String {
    let out: Output = Command::new(env!("CARGO_BIN_EXE_cipherlake"))
        .args(args)
        .env("CIPHERLAKE_DB", db)
        .env_remove("RUST_LOG")
        .output()
        .expect("the binary runs");
    assert!(
        out.status.success(),
        "cipherlake {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

fn postgres_admin_url() -> String {
    std::env::var("CIPHERLAKE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "CIPHERLAKE_TEST_POSTGRES_URL is not set: run the tests through scripts/test, which \
             starts a PostgreSQL server (or `source scripts/postgres` first)"
        )
    })
}

/// A fresh PostgreSQL database; returns its URL.
async fn postgres_db(name: &str) -> String {
    let admin = postgres_admin_url();
    let conn = Conn::open(&admin.parse().unwrap()).await.unwrap();
    let db = format!("cli_{name}_{}", std::process::id());
    conn.batch(
        &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
        "drop",
    )
    .await
    .unwrap();
    conn.batch(&format!("CREATE DATABASE {db}"), "create")
        .await
        .unwrap();
    format!("{}/{db}", admin.rsplit_once('/').unwrap().0)
}

/// The custodian's whole flow on one database: keys, the sample, a SQL job, and in-place
/// encryption of an existing plaintext table, interrupted and resumed.
async fn custodian_flow(db: &str) {
    let pem = cmk_pem();
    ok_db(
        db,
        &["ae", "create-cmk", "--name", "HrCMK", "--key-path", &pem],
    );
    ok_db(
        db,
        &["ae", "create-cek", "--name", "HrCEK", "--cmk", "HrCMK"],
    );
    let made = ok_db(
        db,
        &["ae", "sample", "contoso", "--rows", "60", "--cek", "HrCEK"],
    );
    assert!(made.contains("60 rows"), "{made}");
    let shown = ok_db(db, &["ae", "show"]);
    assert!(shown.contains("HrCMK provider=local"), "{shown}");
    assert!(
        shown.contains("HrCEK cmk=HrCMK algorithm=RSA_OAEP"),
        "{shown}"
    );
    assert!(
        shown.contains("Employees.SSN char(11) deterministic cek=HrCEK"),
        "{shown}"
    );
    assert!(
        shown.contains("Employees.Salary money randomized"),
        "{shown}"
    );

    let database = format!("hr={db}");
    let by_department = ok_db(
        db,
        &[
            "sql",
            "--database",
            &database,
            "--format",
            "csv",
            "SELECT count(*) AS n, count(DISTINCT \"Department\") AS departments, \
             sum(\"Salary\") > 0 AS paid FROM hr.\"Employees\"",
        ],
    );
    assert_eq!(by_department, "n,departments,paid\n60,6,true\n");
    let lookup = ok_db(
        db,
        &[
            "sql",
            "--database",
            &database,
            "--format",
            "csv",
            "SELECT \"EmployeeID\" FROM hr.\"Employees\" WHERE \"SSN\" = '100-00-0021'",
        ],
    );
    assert_eq!(lookup, "EmployeeID\n4\n");

    // An existing plaintext table, encrypted in place: interrupted after one batch, resumed.
    let conn = Conn::open(&db.parse().unwrap()).await.unwrap();
    conn.batch(
        "CREATE TABLE patients (id INTEGER PRIMARY KEY, name VARCHAR(40), code INTEGER)",
        "create",
    )
    .await
    .unwrap();
    for i in 0..25 {
        conn.batch(
            &format!(
                "INSERT INTO patients VALUES ({i}, 'patient {i}', {})",
                i * 3
            ),
            "insert",
        )
        .await
        .unwrap();
    }
    let columns = "name:randomized,code:deterministic";
    let stopped = ok_db(
        db,
        &[
            "ae",
            "encrypt-columns",
            "--table",
            "patients",
            "--columns",
            columns,
            "--cek",
            "HrCEK",
            "--batch-rows",
            "10",
            "--max-batches",
            "1",
        ],
    );
    assert!(
        stopped.contains("run the same command again to resume"),
        "{stopped}"
    );
    let done = ok_db(
        db,
        &[
            "ae",
            "encrypt-columns",
            "--table",
            "patients",
            "--columns",
            columns,
            "--cek",
            "HrCEK",
            "--batch-rows",
            "10",
        ],
    );
    assert!(
        done.contains("encrypted 40 cell(s) of table patients; done"),
        "{done}"
    );
    let read = ok_db(
        db,
        &[
            "sql",
            "--database",
            &database,
            "--format",
            "csv",
            "SELECT name FROM hr.patients WHERE code = 21",
        ],
    );
    assert_eq!(read, "name\npatient 7\n");
    let plain = ok_db(
        db,
        &[
            "ae",
            "decrypt-columns",
            "--table",
            "patients",
            "--columns",
            "name,code",
        ],
    );
    assert!(plain.contains("decrypted 50 cell(s)"), "{plain}");
    let shown = ok_db(db, &["ae", "show"]);
    assert!(!shown.contains("patients."), "{shown}");
}

#[tokio::test]
async fn custodian_flow_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    custodian_flow(&format!("sqlite:{}", dir.path().join("hr.db").display())).await;
}

#[tokio::test]
async fn custodian_flow_on_postgres() {
    custodian_flow(&postgres_db("flow").await).await;
}

#[test]
fn wrong_password_is_one_clear_line_without_the_password() {
    let admin = postgres_admin_url();
    let (scheme, rest) = admin.split_once("://").unwrap();
    let user = rest.split_once(':').unwrap().0;
    let host = rest.rsplit_once('@').unwrap().1;
    let database = format!("hr={scheme}://{user}:NotTheRightOne42@{host}");
    let e = fails(&["sql", "--database", &database, "SELECT 1"]);
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(e.contains(&format!("{user}:***@")), "{e}");
    assert!(!e.contains("NotTheRightOne42"), "{e}");
}

/// Runs a testbed command; asserts success; returns stdout.
fn bed_ok(bed: &Testbed, args: &[&str]) -> String {
    let out = bed.command(args).output().expect("the binary runs");
    assert!(
        out.status.success(),
        "cipherlake {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 output")
}

#[test]
fn column_master_key_held_by_the_cas() {
    let bed = Testbed::start();
    let db = format!("sqlite:{}", path(&bed.dir.path().join("hr.db")));
    // The analytics job: it sees the database only through the released DATABASE_HR.
    let job = "SELECT \"SSN\", \"Department\" FROM hr.\"Employees\" WHERE \"EmployeeID\" = 2";
    let job_file = bed.dir.path().join("job.sql");
    std::fs::write(&job_file, job).unwrap();
    let hr_policy = |predecessor: &str, pin: &str| {
        format!(
            "apiVersion: cipherlake/v1\nname: hr\npredecessor: {predecessor}\nowners: [{owner}]\n\
             attestation:\n  tees: [sim]\n\
             services:\n\
             \x20 driver:\n    operation: run\n    measurements: [sha384:{m}]\n    jobs: [sha256:{job_hash}]\n\
             \x20   env:\n      DATABASE_HR: \"{db}\"\n\
             \x20   kms_keys: {{ hrcmk: [unwrap] }}\n    console: full\n\
             \x20   databases:\n      hr: {pin}\n\
             users:\n  custodian:\n    key: {custodian}\n    kms_keys: {{ hrcmk: [unwrap, wrap] }}\n\
             secrets:\n  hrcmk: {{ kind: rsa-2048, generate: true }}\n",
            owner = bed.owner,
            custodian = bed.custodian,
            m = bed.measurement,
            job_hash = super::run::sha256_hex(job.as_bytes()),
        )
    };
    // The driver trusts the catalog's column master key only at the CAS key path, and the SSN
    // column only encrypted with CasCEK.
    let pinned = "{ trusted_key_paths: [\"cas:hrcmk\"], columns: [{ table: Employees, column: SSN, cek: CasCEK }] }";
    let policy_file = bed.apply("hr.yaml", &hr_policy("null", pinned));
    let [user_flag, user, key_flag, key] = bed.as_custodian();
    let cas = [
        "--cas", &bed.url, "--policy", "hr", user_flag, user, key_flag, key,
    ];

    let with_db = |args: &[&str]| {
        let mut full = args.to_vec();
        full.extend(["--db", &db]);
        full.extend(cas);
        bed_ok(&bed, &full)
    };
    with_db(&[
        "ae",
        "create-cmk",
        "--name",
        "CasCMK",
        "--key-path",
        "cas:hrcmk",
    ]);
    with_db(&["ae", "create-cek", "--name", "CasCEK", "--cmk", "CasCMK"]);
    with_db(&["ae", "sample", "contoso", "--rows", "12", "--cek", "CasCEK"]);
    let shown = ok_db(&db, &["ae", "show"]);
    assert!(
        shown.contains("CasCMK provider=cas key_path=hrcmk signed=true"),
        "{shown}"
    );

    // Without the CAS, the keys cannot be unwrapped: a clear error, no data.
    let database = format!("hr={db}");
    let e = fails(&[
        "sql",
        "--database",
        &database,
        "SELECT count(*) FROM hr.\"Employees\"",
    ]);
    assert!(
        e.contains("key store provider \"cas\" is not available"),
        "{e}"
    );

    // An attested job reads the encrypted columns through the CAS-held key, in the engine.
    let ran = bed_ok(
        &bed,
        &[
            "run",
            "--cas",
            &bed.url,
            "--policy",
            "hr",
            "--service",
            "driver",
            "--format",
            "csv",
            path(&job_file),
        ],
    );
    assert!(ran.starts_with("SSN,Department\n100-00-0007,"), "{ran}");
    // A policy trusting another key path (as if the catalog had been re-pointed) stops the job
    // before any row is read, naming the untrusted path.
    let hash = super::support::ok(&["policy", "hash", path(&policy_file)]);
    bed.apply(
        "hr.yaml",
        &hr_policy(hash.trim(), "{ trusted_key_paths: [\"cas:othercmk\"] }"),
    );
    let refused = bed
        .command(&[
            "run",
            "--cas",
            &bed.url,
            "--policy",
            "hr",
            "--service",
            "driver",
            path(&job_file),
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(
        stderr.contains("DATABASE_HR")
            && stderr.contains("key path")
            && stderr.contains("does not trust"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&refused.stdout).contains("100-00-"));
    // So does ad-hoc SQL by the custodian, a user (--kms cas: brings the CAS key store).
    let adhoc = bed_ok(
        &bed,
        &[
            "sql",
            "--database",
            &format!("hr={db}"),
            "--format",
            "csv",
            "--kms",
            &format!("cas:{}", bed.url),
            "--policy",
            "hr",
            user_flag,
            user,
            key_flag,
            key,
            "SELECT count(*) AS n FROM hr.\"Employees\"",
        ],
    );
    assert_eq!(adhoc, "n\n12\n");

    // The CAS unwraps the CEK (after re-signing to verify its value) for the custodian user, who decrypts the columns back to plaintext.
    let done = with_db(&[
        "ae",
        "decrypt-columns",
        "--table",
        "Employees",
        "--columns",
        "SSN,Salary",
    ]);
    assert!(done.contains("decrypted 24 cell(s)"), "{done}");
    let plain = ok_db(
        &db,
        &[
            "sql",
            "--database",
            &database,
            "--format",
            "csv",
            "SELECT \"SSN\" FROM hr.\"Employees\" WHERE \"EmployeeID\" = 2",
        ],
    );
    assert_eq!(plain, "SSN\n100-00-0007\n");
}

#[test]
fn malformed_database_urls_are_refused_without_echoing_the_password() {
    let e = fails(&[
        "sql",
        "--database",
        "hr=mysql://bob:Hunter2Secret@db/hr",
        "SELECT 1",
    ]);
    assert!(
        e.contains("bad database URL") && e.contains("bob:***@"),
        "{e}"
    );
    assert!(!e.contains("Hunter2Secret"), "{e}");
    let e = fails(&["ae", "show", "--db", "postgres:Hunter2Secret@db/hr"]);
    assert!(!e.contains("Hunter2Secret"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let missing = format!("hr=sqlite:{}", path(&dir.path().join("missing.db")));
    let e = fails(&["sql", "--database", &missing, "SELECT 1"]);
    assert!(e.contains("no such database file"), "{e}");
}
