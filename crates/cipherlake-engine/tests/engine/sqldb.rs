//! SQL database tables with Always Encrypted columns, on SQLite and on the PostgreSQL server
//! that scripts/test starts (CIPHERLAKE_TEST_POSTGRES_URL): round trips for every column mode,
//! ciphertext pushdown, attacks on cells and keys, and transactional writes, and the policy
//! that pins the untrusted key catalog (trusted key paths, required encrypted columns).

use std::path::PathBuf;
use std::time::Duration;

use arrow::array::{AsArray, RecordBatch};
use arrow::datatypes::Int64Type;
use arrow::util::pretty::pretty_format_batches;
use cipherlake_engine::sqldb::conn::{Conn, Value};
use cipherlake_engine::sqldb::custodian::{
    ColumnRequest, create_cek, create_cmk, decrypt_columns, encrypt_columns,
};
use cipherlake_engine::sqldb::keystore::LOCAL_PROVIDER;
use cipherlake_engine::sqldb::pinning::Usage;
use cipherlake_engine::sqldb::sample::create_contoso;
use cipherlake_engine::sqldb::{
    DatabasePolicy, DatabaseSpec, DbUrl, KeyStores, PolicyViolation, RequiredColumn, SqlDbError,
    register_database, register_database_with_policy,
};
use datafusion::prelude::SessionContext;

/// The PostgreSQL superuser URL; a test that needs it fails loudly without it.
fn postgres_admin_url() -> String {
    std::env::var("CIPHERLAKE_TEST_POSTGRES_URL").unwrap_or_else(|_| {
        panic!(
            "CIPHERLAKE_TEST_POSTGRES_URL is not set: run the tests through scripts/test, which \
             starts a PostgreSQL server (or `source scripts/postgres` first)"
        )
    })
}

/// A test database: a fresh PostgreSQL database or SQLite file, dropped with the value.
struct TestDb {
    url: DbUrl,
    label: &'static str,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    async fn postgres(name: &str) -> TestDb {
        let admin_text = postgres_admin_url();
        let admin = Conn::open(&admin_text.parse().unwrap()).await.unwrap();
        let db = format!("cl_{name}_{}", std::process::id());
        admin
            .batch(
                &format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)"),
                "drop",
            )
            .await
            .unwrap();
        admin
            .batch(&format!("CREATE DATABASE {db}"), "create")
            .await
            .unwrap();
        let (base, _) = admin_text.rsplit_once('/').unwrap();
        TestDb {
            url: format!("{base}/{db}").parse().unwrap(),
            label: "postgres",
            _dir: None,
        }
    }

    fn sqlite() -> TestDb {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite:{}", dir.path().join("test.db").display());
        TestDb {
            url: url.parse().unwrap(),
            label: "sqlite",
            _dir: Some(dir),
        }
    }

    async fn both(name: &str) -> Vec<TestDb> {
        vec![TestDb::sqlite(), TestDb::postgres(name).await]
    }

    async fn conn(&self) -> Conn {
        Conn::open(&self.url).await.unwrap()
    }

    /// Creates CMK `cmk` (local PEM) and CEKs `cek` and `cek2` under it.
    async fn keys(&self) {
        let conn = self.conn().await;
        let stores = KeyStores::default();
        create_cmk(&conn, &stores, "cmk", LOCAL_PROVIDER, &cmk_pem())
            .await
            .unwrap();
        create_cek(&conn, &stores, "cek", "cmk").await.unwrap();
        create_cek(&conn, &stores, "cek2", "cmk").await.unwrap();
    }

    async fn session(&self) -> Result<SessionContext, String> {
        let ctx = SessionContext::new();
        let spec = DatabaseSpec {
            name: "db".into(),
            url: self.url.clone(),
        };
        register_database(&ctx, &spec, &KeyStores::default())
            .await
            .map_err(|e| e.to_string())?;
        Ok(ctx)
    }

    /// Registers the database as `db` under `policy`; on error, checks that no schema was
    /// registered.
    async fn session_with(&self, policy: &DatabasePolicy) -> Result<SessionContext, SqlDbError> {
        let ctx = SessionContext::new();
        let spec = DatabaseSpec {
            name: "db".into(),
            url: self.url.clone(),
        };
        match register_database_with_policy(&ctx, &spec, &KeyStores::default(), policy).await {
            Ok(_) => Ok(ctx),
            Err(e) => {
                let registered = ctx.catalog("datafusion").unwrap().schema("db").is_some();
                assert!(!registered, "{}: schema registered despite {e}", self.label);
                Err(e)
            }
        }
    }

    async fn exec(&self, sql: &str) {
        self.conn().await.batch(sql, sql).await.unwrap();
    }

    async fn raw(&self, sql: &str) -> Vec<Vec<Value>> {
        self.conn().await.query(sql, vec![], sql).await.unwrap()
    }
}

fn cmk_pem() -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/fixtures/always-encrypted/always-encrypted.pem");
    assert!(path.exists(), "missing fixture {}", path.display());
    path.display().to_string()
}

async fn run(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, String> {
    match ctx.sql(sql).await {
        Ok(df) => df.collect().await.map_err(|e| e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}

async fn text(ctx: &SessionContext, sql: &str) -> String {
    let batches = run(ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    pretty_format_batches(&batches).unwrap().to_string()
}

async fn count(ctx: &SessionContext, sql: &str) -> i64 {
    let batches = run(ctx, sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let column =
        arrow::compute::cast(batches[0].column(0), &arrow::datatypes::DataType::Int64).unwrap();
    column.as_primitive::<Int64Type>().value(0)
}

/// A table `t` with plaintext and encrypted columns of several types and both modes.
async fn create_mixed_table(db: &TestDb) {
    db.keys().await;
    let (int, bytes, text) = if db.label == "postgres" {
        ("integer", "bytea", "text")
    } else {
        ("INTEGER", "BLOB", "TEXT")
    };
    db.exec(&format!(
        "CREATE TABLE t (id {int} PRIMARY KEY, note {text}, d_big {bytes}, r_name {bytes}, \
         d_dec {bytes}, r_date {bytes}, d_code {bytes}, r_flag {bytes})"
    ))
    .await;
    db.exec(
        "INSERT INTO cipherlake_encrypted_columns VALUES
           ('t', 'd_big', 'cek', 'deterministic', 'bigint'),
           ('t', 'r_name', 'cek', 'randomized', 'nvarchar(50)'),
           ('t', 'd_dec', 'cek2', 'deterministic', 'decimal(10,2)'),
           ('t', 'r_date', 'cek', 'randomized', 'date'),
           ('t', 'd_code', 'cek2', 'deterministic', 'varchar(20)'),
           ('t', 'r_flag', 'cek', 'randomized', 'bit')",
    )
    .await;
}

const MIXED_ROWS: &str = "INSERT INTO db.t VALUES
    (1, 'first', 42, 'Zoë', 12.50, DATE '2024-02-29', 'A-1', true),
    (2, NULL, -7, 'Ångström', -0.01, DATE '1999-12-31', 'B-2', false),
    (3, 'third', 42, NULL, NULL, NULL, 'A-1', NULL)";

const MIXED_EXPECTED: &str = "\
+----+-------+-------+----------+-------+------------+--------+--------+
| id | note  | d_big | r_name   | d_dec | r_date     | d_code | r_flag |
+----+-------+-------+----------+-------+------------+--------+--------+
| 1  | first | 42    | Zoë      | 12.50 | 2024-02-29 | A-1    | true   |
| 2  |       | -7    | Ångström | -0.01 | 1999-12-31 | B-2    | false  |
| 3  | third | 42    |          |       |            | A-1    |        |
+----+-------+-------+----------+-------+------------+--------+--------+";

#[tokio::test]
async fn round_trip_every_mode_on_sqlite_and_postgres() {
    for db in TestDb::both("round_trip").await {
        create_mixed_table(&db).await;
        let ctx = db.session().await.unwrap();
        assert_eq!(count(&ctx, MIXED_ROWS).await as u64, 3, "{}", db.label);
        let shown = text(&ctx, "SELECT * FROM db.t ORDER BY id").await;
        assert_eq!(shown, MIXED_EXPECTED, "{}", db.label);

        // At rest: cells in SQL Server's format; deterministic cells repeat, randomized don't.
        let raw = db
            .raw("SELECT d_big, r_name, d_code FROM t ORDER BY id")
            .await;
        let cell = |r: usize, c: usize| match &raw[r][c] {
            Value::Bytes(b) => b.clone(),
            other => panic!("{}: expected bytes, got {other:?}", db.label),
        };
        assert_eq!(cell(0, 0)[0], 1, "version byte");
        assert!(cell(0, 0).len() >= 65);
        assert_eq!(cell(0, 0), cell(2, 0), "{}: deterministic", db.label);
        assert_eq!(cell(0, 2), cell(2, 2));
        assert_ne!(cell(0, 1), cell(1, 1));
        db.exec("INSERT INTO t (id, r_name) SELECT 4, r_name FROM t WHERE id = 1")
            .await;
        let again = text(&ctx, "SELECT r_name FROM db.t WHERE id = 4").await;
        assert!(again.contains("Zoë"), "{}: {again}", db.label);

        // Projection pushdown: a count and a single column read only what they need.
        assert_eq!(count(&ctx, "SELECT count(*) FROM db.t").await, 4);
        assert_eq!(
            count(&ctx, "SELECT count(*) FROM db.t WHERE d_code = 'A-1'").await,
            2
        );
        // Filters on randomized columns are evaluated by the engine on decrypted values.
        assert_eq!(
            count(&ctx, "SELECT count(*) FROM db.t WHERE r_name = 'Zoë'").await,
            2
        );
        assert_eq!(
            count(&ctx, "SELECT count(*) FROM db.t WHERE d_dec > 0").await,
            1
        );
    }
}

#[tokio::test]
async fn contoso_sample_aggregates_and_pushes_ssn_lookups_down_as_ciphertext() {
    for db in TestDb::both("contoso").await {
        db.keys().await;
        let rows = create_contoso(&db.url, &KeyStores::default(), "cek", 300)
            .await
            .unwrap();
        assert_eq!(rows, 300, "{}", db.label);
        let ctx = db.session().await.unwrap();

        let plan = text(
            &ctx,
            "EXPLAIN SELECT \"EmployeeID\" FROM db.\"Employees\" WHERE \"SSN\" = '100-00-0294'",
        )
        .await;
        assert!(
            plan.contains("full_filters=[db.Employees.SSN = Utf8(\"100-00-0294\")]"),
            "{plan}"
        );
        assert!(!plan.contains("FilterExec"), "{}: {plan}", db.label);
        // Employee i has SSN 100-00-0000 + 7 (i - 1).
        let found = text(
            &ctx,
            "SELECT \"EmployeeID\", \"SSN\" FROM db.\"Employees\" WHERE \"SSN\" = '100-00-0294'",
        )
        .await;
        assert!(
            found.contains("| 43         | 100-00-0294 |"),
            "{}: {found}",
            db.label
        );
        assert_eq!(
            count(
                &ctx,
                "SELECT count(*) FROM db.\"Employees\" WHERE \"SSN\" IN ('100-00-0000', '100-00-0007', '999-99-9999')"
            )
            .await,
            2
        );
        // The stored SSN cell is the deterministic encryption of the value, not the value.
        let raw = db
            .raw("SELECT \"SSN\" FROM \"Employees\" WHERE \"EmployeeID\" = 43")
            .await;
        assert!(matches!(&raw[0][0], Value::Bytes(b) if !b.windows(6).any(|w| w == b"100-00")));

        // Salary by department, inside the engine.
        let by_department = run(
            &ctx,
            "SELECT \"Department\", count(*) AS n, sum(\"Salary\") AS total, min(\"Salary\") AS lo, max(\"Salary\") AS hi
             FROM db.\"Employees\" GROUP BY \"Department\" ORDER BY \"Department\"",
        )
        .await
        .unwrap();
        let batch = &by_department[0];
        assert_eq!(batch.num_rows(), 6, "{}", db.label);
        let n: i64 = batch
            .column(1)
            .as_primitive::<Int64Type>()
            .iter()
            .flatten()
            .sum();
        assert_eq!(n, 300);
        let shown = pretty_format_batches(&by_department).unwrap().to_string();
        assert!(shown.contains("Engineering"), "{shown}");
        let lo = text(
            &ctx,
            "SELECT min(\"Salary\") >= 40000, max(\"Salary\") < 160000 FROM db.\"Employees\"",
        )
        .await;
        assert!(lo.contains("| true") && !lo.contains("false"), "{lo}");

        // Results written back encrypted: a second table through INSERT … SELECT.
        db.exec(if db.label == "postgres" {
            "CREATE TABLE totals (department text, total bytea)"
        } else {
            "CREATE TABLE totals (department TEXT, total BLOB)"
        })
        .await;
        db.exec("INSERT INTO cipherlake_encrypted_columns VALUES ('totals', 'total', 'cek', 'randomized', 'money')")
            .await;
        let ctx = db.session().await.unwrap();
        assert_eq!(
            count(
                &ctx,
                "INSERT INTO db.totals SELECT \"Department\", sum(\"Salary\") FROM db.\"Employees\" GROUP BY \"Department\""
            )
            .await,
            6
        );
        assert_eq!(
            text(&ctx, "SELECT sum(total) = (SELECT sum(\"Salary\") FROM db.\"Employees\") AS same FROM db.totals").await,
            "+------+\n| same |\n+------+\n| true |\n+------+"
        );
    }
}

/// Changes the stored SSN cell of employee 1 with `tamper` and returns the query error.
async fn tampered_read(db: &TestDb, tamper: impl Fn(&mut Vec<u8>)) -> String {
    let raw = db
        .raw("SELECT \"SSN\" FROM \"Employees\" WHERE \"EmployeeID\" = 1")
        .await;
    let Value::Bytes(mut cell) = raw[0][0].clone() else {
        panic!("bytes expected")
    };
    tamper(&mut cell);
    db.conn()
        .await
        .execute(
            "UPDATE \"Employees\" SET \"SSN\" = $1 WHERE \"EmployeeID\" = 1",
            vec![Value::Bytes(cell)],
            "tamper",
        )
        .await
        .unwrap();
    let ctx = db.session().await.unwrap();
    run(&ctx, "SELECT \"SSN\" FROM db.\"Employees\"")
        .await
        .expect_err("a tampered cell must not be read")
}

#[tokio::test]
async fn tampered_truncated_and_misversioned_cells_and_wrong_keys_are_refused() {
    for db in TestDb::both("attacks").await {
        db.keys().await;
        create_contoso(&db.url, &KeyStores::default(), "cek", 5)
            .await
            .unwrap();
        let expect = |e: &str, what: &str| {
            assert!(
                e.contains("table Employees, column SSN") && e.contains(what),
                "{}: {e}",
                db.label
            );
        };
        let original = db
            .raw("SELECT \"SSN\" FROM \"Employees\" WHERE \"EmployeeID\" = 1")
            .await[0][0]
            .clone();
        let restore = || async {
            db.conn()
                .await
                .execute(
                    "UPDATE \"Employees\" SET \"SSN\" = $1 WHERE \"EmployeeID\" = 1",
                    vec![original.clone()],
                    "restore",
                )
                .await
                .unwrap();
        };
        let e = tampered_read(&db, |c| {
            let last = c.len() - 1;
            c[last] ^= 1
        })
        .await;
        expect(&e, "authentication failed");
        restore().await;
        let e = tampered_read(&db, |c| c[0] = 2).await;
        expect(&e, "unsupported cell version 0x02");
        restore().await;
        let e = tampered_read(&db, |c| c.truncate(40)).await;
        expect(&e, "too short");
        restore().await;

        // The column claims another key: every cell fails authentication.
        db.exec("UPDATE cipherlake_encrypted_columns SET column_encryption_key = 'cek2' WHERE column_name = 'SSN'")
            .await;
        let ctx = db.session().await.unwrap();
        let e = run(&ctx, "SELECT \"SSN\" FROM db.\"Employees\"")
            .await
            .unwrap_err();
        expect(&e, "authentication failed");
        db.exec("UPDATE cipherlake_encrypted_columns SET column_encryption_key = 'cek' WHERE column_name = 'SSN'")
            .await;
        db.session().await.expect("restored");

        // A CEK value whose signature does not verify is refused when the keys are loaded.
        let raw = db
            .raw("SELECT encrypted_value FROM cipherlake_column_encryption_keys WHERE name = 'cek'")
            .await;
        let Value::Bytes(mut value) = raw[0][0].clone() else {
            panic!()
        };
        let last = value.len() - 1;
        value[last] ^= 0x40;
        db.conn()
            .await
            .execute(
                "UPDATE cipherlake_column_encryption_keys SET encrypted_value = $1 WHERE name = 'cek'",
                vec![Value::Bytes(value)],
                "tamper",
            )
            .await
            .unwrap();
        let e = db
            .session()
            .await
            .err()
            .expect("a bad CEK signature is refused");
        assert!(
            e.contains("column encryption key cek") && e.contains("signature does not verify"),
            "{}: {e}",
            db.label
        );
    }
}

#[tokio::test]
async fn sqlite_insert_failing_midway_leaves_no_rows() {
    let db = TestDb::sqlite();
    create_mixed_table(&db).await;
    let ctx = db.session().await.unwrap();
    // Row 5000 repeats a primary key: the database refuses it after thousands of rows went in.
    let e = run(
        &ctx,
        "INSERT INTO db.t (id, d_code) SELECT CASE WHEN value = 5000 THEN 1 ELSE value END, 'x' FROM range(1, 10000)",
    )
    .await
    .unwrap_err();
    assert!(e.contains("inserting into table t"), "{e}");
    assert_eq!(count(&ctx, "SELECT count(*) FROM db.t").await, 0);
    // A value that does not fit its encrypted column's type, in a later batch.
    let e = run(
        &ctx,
        "INSERT INTO db.t (id, d_code) SELECT value, CASE WHEN value = 9000 THEN repeat('x', 21) ELSE 'ok' END FROM range(1, 10000)",
    )
    .await
    .unwrap_err();
    assert!(
        e.contains("table t, column d_code") && e.contains("too long"),
        "{e}"
    );
    assert_eq!(count(&ctx, "SELECT count(*) FROM db.t").await, 0);
}

#[tokio::test]
async fn postgres_connection_killed_mid_write_leaves_no_rows() {
    let db = TestDb::postgres("killed").await;
    create_mixed_table(&db).await;
    let ctx = db.session().await.unwrap();
    let DbUrl::Postgres(url) = &db.url else {
        unreachable!()
    };
    let database = url.rsplit_once('/').unwrap().1.to_owned();
    let killer = async {
        let admin = Conn::open(&postgres_admin_url().parse().unwrap())
            .await
            .unwrap();
        for _ in 0..3000 {
            let rows = admin
                .query(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'INSERT INTO \"t\"%'",
                    vec![Value::Text(database.clone())],
                    "watch",
                )
                .await
                .unwrap();
            if matches!(rows[0][0], Value::Int(n) if n > 0) {
                // Let some rows go in first.
                tokio::time::sleep(Duration::from_millis(50)).await;
                admin
                    .query(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1 AND query LIKE 'INSERT INTO \"t\"%'",
                        vec![Value::Text(database.clone())],
                        "kill",
                    )
                    .await
                    .unwrap();
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        false
    };
    let insert = run(
        &ctx,
        "INSERT INTO db.t (id, d_big, r_name) SELECT value AS id, value AS big, 'name' FROM range(1, 500000)",
    );
    let (killed, inserted) = tokio::join!(killer, insert);
    assert!(killed, "the insert was never seen running: {inserted:?}");
    let e = inserted.expect_err("the insert must fail when its connection dies");
    assert!(
        e.contains("inserting into table t") || e.contains("committing"),
        "{e}"
    );
    assert_eq!(count(&ctx, "SELECT count(*) FROM db.t").await, 0);
}

#[tokio::test]
async fn wrong_postgres_password_is_a_clear_error_without_the_password() {
    let admin = postgres_admin_url();
    let (user, host) = admin
        .split_once(':')
        .and_then(|(scheme, rest)| {
            let (user, _) = rest.split_once(':')?;
            Some((
                format!("{scheme}:{user}"),
                rest.rsplit_once('@')?.1.to_owned(),
            ))
        })
        .unwrap();
    let url = format!("{user}:Wr0ngPassw0rdXYZ@{host}");
    let spec: DatabaseSpec = format!("hr={url}").parse().unwrap();
    let e = register_database(&SessionContext::new(), &spec, &KeyStores::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(e.contains("password authentication failed"), "{e}");
    assert!(e.contains("postgres:***@"), "{e}");
    assert!(!e.contains("Wr0ngPassw0rdXYZ"), "{e}");
    assert!(!format!("{spec:?}").contains("Wr0ngPassw0rdXYZ"));
}

#[tokio::test]
async fn existing_columns_are_encrypted_and_decrypted_in_place_resumably() {
    for db in TestDb::both("in_place").await {
        db.keys().await;
        let (int, chars, dec) = if db.label == "postgres" {
            ("integer", "character(11)", "numeric(10,2)")
        } else {
            ("INTEGER", "CHAR(11)", "DECIMAL(10,2)")
        };
        db.exec(&format!(
            "CREATE TABLE people (id {int} PRIMARY KEY, ssn {chars}, pay {dec})"
        ))
        .await;
        for i in 0..45 {
            let pay = if i % 10 == 3 {
                "NULL".to_owned()
            } else {
                format!("{i}.25")
            };
            db.exec(&format!(
                "INSERT INTO people VALUES ({i}, '{:03}-00-{:04}', {pay})",
                i, i
            ))
            .await;
        }
        let before = text(
            &db.session().await.unwrap(),
            "SELECT id, ssn, pay FROM db.people ORDER BY id",
        )
        .await;
        let conn = db.conn().await;
        let stores = KeyStores::default();
        let columns: Vec<ColumnRequest> = vec![
            "ssn:deterministic:char(11)".parse().unwrap(),
            "pay:randomized".parse().unwrap(),
        ];
        // Interrupted after two batches of ten rows: the table is still readable in plaintext.
        let first = encrypt_columns(&conn, &stores, "people", &columns, "cek", 10, Some(2))
            .await
            .unwrap();
        assert!(!first.finished);
        assert_eq!(first.cells, 20);
        let rest = encrypt_columns(&conn, &stores, "people", &columns, "cek", 10, None)
            .await
            .unwrap();
        assert!(rest.finished, "{}", db.label);
        assert_eq!(rest.cells, 25 + 40);
        let ctx = db.session().await.unwrap();
        let after = text(&ctx, "SELECT id, ssn, pay FROM db.people ORDER BY id").await;
        assert_eq!(before, after, "{}", db.label);
        assert_eq!(
            count(
                &ctx,
                "SELECT count(*) FROM db.people WHERE ssn = '007-00-0007'"
            )
            .await,
            1
        );
        let raw = db.raw("SELECT ssn FROM people WHERE id = 7").await;
        assert!(matches!(&raw[0][0], Value::Bytes(_)), "{}", db.label);
        let again = encrypt_columns(&conn, &stores, "people", &columns[..1], "cek", 10, None).await;
        assert!(
            again
                .unwrap_err()
                .to_string()
                .contains("table people, column ssn: is already encrypted")
        );

        let done = decrypt_columns(
            &conn,
            &stores,
            "people",
            &["ssn".into(), "pay".into()],
            7,
            None,
        )
        .await
        .unwrap();
        assert!(done.finished);
        let plain = text(
            &db.session().await.unwrap(),
            "SELECT id, ssn, pay FROM db.people ORDER BY id",
        )
        .await;
        assert_eq!(before, plain, "{}", db.label);
    }
}

#[tokio::test]
async fn floats_money_guids_and_date_times_round_trip() {
    for db in TestDb::both("more_types").await {
        db.keys().await;
        let bytes = if db.label == "postgres" {
            "bytea"
        } else {
            "BLOB"
        };
        db.exec(&format!(
            "CREATE TABLE m (id integer, f {bytes}, pay {bytes}, g {bytes}, ts {bytes}, tiny {bytes})"
        ))
        .await;
        db.exec(
            "INSERT INTO cipherlake_encrypted_columns VALUES
               ('m', 'f', 'cek', 'randomized', 'float'),
               ('m', 'pay', 'cek', 'randomized', 'money'),
               ('m', 'g', 'cek', 'deterministic', 'uniqueidentifier'),
               ('m', 'ts', 'cek', 'randomized', 'datetime2(3)'),
               ('m', 'tiny', 'cek2', 'deterministic', 'tinyint')",
        )
        .await;
        let ctx = db.session().await.unwrap();
        count(
            &ctx,
            "INSERT INTO db.m VALUES (1, 1.5, 1234.5678, '6f9619ff-8b86-d011-b42d-00c04fc964ff', '2024-02-29 13:45:10.1239', 255)",
        )
        .await;
        assert_eq!(
            text(&ctx, "SELECT f, pay, g, ts, tiny FROM db.m").await,
            "+-----+-----------+--------------------------------------+-------------------------+------+\n\
             | f   | pay       | g                                    | ts                      | tiny |\n\
             +-----+-----------+--------------------------------------+-------------------------+------+\n\
             | 1.5 | 1234.5678 | 6F9619FF-8B86-D011-B42D-00C04FC964FF | 2024-02-29 13:45:10.123 | 255  |\n\
             +-----+-----------+--------------------------------------+-------------------------+------+",
            "{}",
            db.label
        );
        // A value outside the column's type is refused, naming the column; nothing is written.
        let e = run(&ctx, "INSERT INTO db.m (id, ts) VALUES (2, 'not a time')")
            .await
            .unwrap_err();
        assert!(
            e.contains("table m, column ts: invalid datetime2(3) value"),
            "{e}"
        );
        assert!(!e.contains("not a time"), "{e}");
        assert_eq!(count(&ctx, "SELECT count(*) FROM db.m").await, 1);
    }
}

/// The violations of a [`SqlDbError::Policy`] error of database `db`.
fn refusal(
    result: Result<SessionContext, SqlDbError>,
    label: &str,
) -> (Vec<PolicyViolation>, String) {
    match result {
        Err(e @ SqlDbError::Policy { .. }) => {
            let message = e.to_string();
            let SqlDbError::Policy {
                database,
                violations,
            } = e
            else {
                unreachable!()
            };
            assert_eq!(database, "db", "{label}");
            assert!(message.starts_with("database db: "), "{label}: {message}");
            (violations, message)
        }
        Err(e) => panic!("{label}: expected a policy violation, got {e}"),
        Ok(_) => panic!("{label}: expected a policy violation, the database was registered"),
    }
}

fn required(table: &str, column: &str, cek: Option<&str>) -> RequiredColumn {
    RequiredColumn {
        table: table.into(),
        column: column.into(),
        cek: cek.map(Into::into),
    }
}

/// The contoso sample (SSN deterministic and Salary randomized, both under CEK `cek` of the
/// local CMK `cmk` at [`cmk_pem`]) and the policy that pins exactly that.
async fn pinned_contoso(db: &TestDb) -> DatabasePolicy {
    db.keys().await;
    create_contoso(&db.url, &KeyStores::default(), "cek", 50)
        .await
        .unwrap();
    DatabasePolicy::pinned(
        vec![cmk_pem()],
        vec![
            required("Employees", "SSN", Some("cek")),
            required("Employees", "Salary", None),
        ],
        true,
    )
}

#[tokio::test]
async fn pinned_catalog_with_the_trusted_key_path_reads_decrypted_values() {
    for db in TestDb::both("pin_ok").await {
        let policy = pinned_contoso(&db).await;
        let ctx = db.session_with(&policy).await.unwrap();
        let found = text(
            &ctx,
            "SELECT \"SSN\" FROM db.\"Employees\" WHERE \"EmployeeID\" = 43",
        )
        .await;
        assert!(found.contains("| 100-00-0294 |"), "{}: {found}", db.label);
        // `local:PATH` spells the same key path.
        let local = DatabasePolicy::pinned(
            vec!["cas:other".into(), format!("local:{}", cmk_pem())],
            policy.required_columns.clone(),
            true,
        );
        db.session_with(&local).await.unwrap();
        // A database without encrypted columns needs no trusted key: the strictest policy
        // (the default) registers its plaintext tables.
        db.exec("DELETE FROM cipherlake_encrypted_columns").await;
        db.exec("DROP TABLE \"Employees\"").await;
        db.exec("CREATE TABLE plain (id integer, note text)").await;
        db.exec("INSERT INTO plain VALUES (1, 'x')").await;
        let ctx = db.session_with(&DatabasePolicy::default()).await.unwrap();
        assert_eq!(count(&ctx, "SELECT count(*) FROM db.plain").await, 1);
    }
}

#[tokio::test]
async fn pinned_catalog_refuses_a_required_column_whose_encryption_row_was_dropped() {
    for db in TestDb::both("pin_dropped").await {
        let policy = pinned_contoso(&db).await;
        db.exec("DELETE FROM cipherlake_encrypted_columns WHERE column_name = 'SSN'")
            .await;
        // Unrestricted, the job would see (and write) the column as plain bytes.
        let ctx = db
            .session_with(&DatabasePolicy::unrestricted())
            .await
            .unwrap();
        let schema = ctx
            .table("db.\"Employees\"")
            .await
            .unwrap()
            .schema()
            .clone();
        assert_eq!(
            schema.field_with_name(None, "SSN").unwrap().data_type(),
            &arrow::datatypes::DataType::Binary
        );

        let (violations, message) = refusal(db.session_with(&policy).await, db.label);
        assert_eq!(
            violations,
            vec![PolicyViolation::NotEncrypted {
                column: "Employees.SSN".into(),
                cek: Some("cek".into()),
            }],
            "{}",
            db.label
        );
        assert_eq!(
            message,
            "database db: the policy requires Employees.SSN to be encrypted (with cek), but the \
             catalog does not mark it encrypted"
        );

        // Encrypted, but with another CEK than the policy's.
        db.exec("INSERT INTO cipherlake_encrypted_columns VALUES ('Employees', 'SSN', 'cek2', 'deterministic', 'char(11)')")
            .await;
        let (violations, message) = refusal(db.session_with(&policy).await, db.label);
        assert_eq!(
            violations,
            vec![PolicyViolation::WrongCek {
                column: "Employees.SSN".into(),
                required: "cek".into(),
                actual: "cek2".into(),
            }],
            "{}: {message}",
            db.label
        );

        // A catalog row for a column the table does not have does not satisfy the policy.
        db.exec("UPDATE cipherlake_encrypted_columns SET column_encryption_key = 'cek' WHERE column_name = 'SSN'")
            .await;
        db.exec("INSERT INTO cipherlake_encrypted_columns VALUES ('Employees', 'Ghost', 'cek', 'randomized', 'int')")
            .await;
        let mut ghost = policy.clone();
        ghost
            .required_columns
            .push(required("Employees", "Ghost", None));
        let (violations, message) = refusal(db.session_with(&ghost).await, db.label);
        assert_eq!(violations.len(), 1, "{}: {message}", db.label);
        assert!(
            message.ends_with(
                "the policy requires Employees.Ghost to be encrypted, but table Employees has no \
                 column Ghost"
            ),
            "{}: {message}",
            db.label
        );
        db.session_with(&policy).await.expect("restored");
    }
}

#[tokio::test]
async fn pinned_catalog_refuses_a_cmk_pointed_at_an_untrusted_pem() {
    for db in TestDb::both("pin_evil").await {
        let policy = pinned_contoso(&db).await;
        // The attacker's own key (a PEM file they hold: here a copy at another path), a CMK
        // and CEK under it, and the SSN column moved to that CEK.
        let dir = tempfile::tempdir().unwrap();
        let evil = dir.path().join("evil.pem").display().to_string();
        std::fs::copy(cmk_pem(), &evil).unwrap();
        let conn = db.conn().await;
        let stores = KeyStores::default();
        create_cmk(&conn, &stores, "evil", LOCAL_PROVIDER, &evil)
            .await
            .unwrap();
        create_cek(&conn, &stores, "evilcek", "evil").await.unwrap();
        db.exec("UPDATE cipherlake_encrypted_columns SET column_encryption_key = 'evilcek' WHERE column_name = 'Salary'")
            .await;
        // Unrestricted, the catalog is taken as it is.
        db.session_with(&DatabasePolicy::unrestricted())
            .await
            .expect("unrestricted: today's behaviour");

        let (violations, message) = refusal(db.session_with(&policy).await, db.label);
        assert_eq!(
            violations,
            vec![PolicyViolation::UntrustedKeyPath {
                usage: Usage {
                    cmk: "evil".into(),
                    key_path: evil.clone(),
                    cek: "evilcek".into(),
                    column: "Employees.Salary".into(),
                },
                trusted: vec![cmk_pem()],
            }],
            "{}: {message}",
            db.label
        );
        assert_eq!(
            message,
            format!(
                "database db: column master key evil has key path {evil}, which the policy does \
                 not trust (trusted: {}); it wraps CEK evilcek of Employees.Salary",
                cmk_pem()
            )
        );

        // A second value of the trusted CEK, wrapped by the attacker's CMK, is refused too:
        // unwrapping must not pick it.
        db.exec("UPDATE cipherlake_encrypted_columns SET column_encryption_key = 'cek' WHERE column_name = 'Salary'")
            .await;
        db.session_with(&policy).await.expect("restored");
        db.exec(
            "INSERT INTO cipherlake_column_encryption_keys SELECT 'cek', column_master_key, \
             encrypted_value, encryption_algorithm FROM cipherlake_column_encryption_keys \
             WHERE name = 'evilcek'",
        )
        .await;
        let (violations, message) = refusal(db.session_with(&policy).await, db.label);
        assert!(
            matches!(
                violations.as_slice(),
                [PolicyViolation::UntrustedKeyPath { usage, .. }]
                    if usage.cmk == "evil" && usage.cek == "cek"
            ),
            "{}: {message}",
            db.label
        );

        // An attested job whose policy trusts no key path refuses every encrypted column.
        let none = DatabasePolicy::pinned(vec![], vec![], true);
        let (violations, message) = refusal(db.session_with(&none).await, db.label);
        assert!(
            violations.iter().all(|v| matches!(
                v,
                PolicyViolation::UntrustedKeyPath { trusted, .. } if trusted.is_empty()
            )) && violations.len() == 2,
            "{}: {message}",
            db.label
        );
        assert!(message.contains("(trusted: none)"), "{message}");
    }
}

#[tokio::test]
async fn pinned_catalog_refuses_local_keys_unless_allowed() {
    for db in TestDb::both("pin_local").await {
        let mut policy = pinned_contoso(&db).await;
        policy.allow_local_keys = false;
        let (violations, message) = refusal(db.session_with(&policy).await, db.label);
        assert!(
            matches!(
                violations.as_slice(),
                [PolicyViolation::LocalKey(usage)]
                    if usage.cmk == "cmk" && usage.key_path == cmk_pem() && usage.cek == "cek"
            ),
            "{}: {message}",
            db.label
        );
        assert!(
            message.starts_with(&format!(
                "database db: column master key cmk is in the local key store (key path {}), \
                 which the policy does not allow (local_keys: false); it wraps CEK cek of \
                 Employees.",
                cmk_pem()
            )),
            "{message}"
        );
        // The default policy refuses both the local store and the untrusted path.
        let (violations, _) = refusal(db.session_with(&DatabasePolicy::default()).await, db.label);
        assert!(matches!(
            violations.as_slice(),
            [
                PolicyViolation::LocalKey(_),
                PolicyViolation::UntrustedKeyPath { .. }
            ]
        ));
        policy.allow_local_keys = true;
        db.session_with(&policy).await.expect("local keys allowed");
    }
}
