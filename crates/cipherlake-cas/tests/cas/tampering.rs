//! The CAS database edited by hand, as an operator with the data directory could: every edit
//! of a row that decides something is refused at start, naming the table and the row, and a
//! running CAS refuses to use the edited state.

use std::time::Duration;

use cipherlake_cas::server;
use cipherlake_cas::service::Config;

use crate::common::{Env, JOB};

/// A CAS with policy `p` in two versions (the second current), a workload attested, then
/// stopped. Returns the environment and the two version hashes.
async fn stopped_cas() -> (Env, String, String) {
    let mut env = Env::start().await;
    let first = env.apply_standard("p").await;
    let text = env
        .policy("p", "sim", &env.measurement, Some(&first))
        .replace("FOOTER_HEX", "FOOTER");
    let second = env.apply("p", &text).await.unwrap();
    env.attest("p", "driver", Some(JOB)).await.unwrap();
    env.server.take().unwrap().shutdown().await;
    (env, first, second)
}

fn db(env: &Env) -> rusqlite::Connection {
    rusqlite::Connection::open(env.data_dir().join("cas.db")).unwrap()
}

/// Starting the CAS on the data directory fails; returns the error text.
async fn start_refused(env: &Env) -> String {
    let mut config = Config::new(env.data_dir());
    config.nonce_ttl = Duration::from_secs(60);
    match server::start(config, "127.0.0.1:0".parse().unwrap()).await {
        Ok(_) => panic!("the CAS started on an edited database"),
        Err(e) => e.to_string(),
    }
}

#[tokio::test]
async fn the_current_flag_flipped_back_to_an_old_version_is_refused() {
    let (env, first, second) = stopped_cas().await;
    db(&env)
        .execute(
            "UPDATE policies SET current = (hash = ?1) WHERE name = 'p'",
            [&first],
        )
        .unwrap();
    let err = start_refused(&env).await;
    assert!(err.contains("tampered"), "{err}");
    assert!(
        err.contains("table policies row (name=p, hash=") && err.contains("edited by hand"),
        "{err}"
    );
    assert!(err.contains(&first) || err.contains(&second), "{err}");
}

#[tokio::test]
async fn an_old_row_replayed_is_refused() {
    let mut env = Env::start().await;
    let first = env.apply_standard("p").await;
    // The first version's row as it was while current (a copy the operator kept).
    let saved: (Vec<u8>, i64, Vec<u8>) = db(&env)
        .query_row(
            "SELECT text_sealed, seq, mac FROM policies WHERE hash = ?1",
            [&first],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    let text = env.policy("p", "sim", &env.measurement, Some(&first));
    let text = text.replace("FOOTER_HEX", "FOOTER");
    env.apply("p", &text).await.unwrap();
    env.server.take().unwrap().shutdown().await;
    db(&env)
        .execute(
            "UPDATE policies SET current = 1, text_sealed = ?1, seq = ?2, mac = ?3 WHERE hash = ?4",
            rusqlite::params![saved.0, saved.1, saved.2, first],
        )
        .unwrap();
    let err = start_refused(&env).await;
    assert!(err.contains("table policies"), "{err}");
    assert!(
        err.contains("older state") || err.contains("out of order"),
        "{err}"
    );
}

#[tokio::test]
async fn the_newest_policy_version_deleted_is_refused() {
    let (env, _, second) = stopped_cas().await;
    db(&env)
        .execute("DELETE FROM policies WHERE hash = ?1", [&second])
        .unwrap();
    let err = start_refused(&env).await;
    assert!(
        err.contains("table policies") && err.contains("rows deleted or added by hand"),
        "{err}"
    );
}

#[tokio::test]
async fn a_grant_added_or_deleted_is_refused() {
    let (env, _, _) = stopped_cas().await;
    let conn = db(&env);
    // A secret granted to another policy's services, added by hand.
    conn.execute(
        "INSERT INTO secrets (policy, name, kind, value_sealed) VALUES ('p', 'stolen', 'aes-256', x'00')",
        [],
    )
    .unwrap();
    let err = start_refused(&env).await;
    assert!(
        err.contains("table secrets row (policy=p, name=stolen)") && err.contains("added by hand"),
        "{err}"
    );
    conn.execute("DELETE FROM secrets WHERE name = 'stolen'", [])
        .unwrap();
    conn.execute("DELETE FROM secrets WHERE name = 'pii'", [])
        .unwrap();
    let err = start_refused(&env).await;
    assert!(
        err.contains("table secrets") && err.contains("rows deleted or added by hand"),
        "{err}"
    );
}

#[tokio::test]
async fn a_platform_registered_by_hand_is_refused() {
    let (env, _, _) = stopped_cas().await;
    db(&env)
        .execute(
            "INSERT INTO platforms (key, registered) VALUES (?1, 0)",
            [hex::encode([0x66u8; 32])],
        )
        .unwrap();
    let err = start_refused(&env).await;
    assert!(err.contains("table platforms row (key=6666"), "{err}");
}

#[tokio::test]
async fn an_audit_row_deleted_is_refused() {
    let (env, _, _) = stopped_cas().await;
    let conn = db(&env);
    let last: i64 = conn
        .query_row("SELECT max(seq) FROM audit", [], |r| r.get(0))
        .unwrap();
    conn.execute("DELETE FROM audit WHERE seq = ?1", [last])
        .unwrap();
    let err = start_refused(&env).await;
    assert!(
        err.contains("table audit") && err.contains("deleted at the end"),
        "{err}"
    );
    conn.execute("DELETE FROM audit WHERE seq = 2", []).unwrap();
    let err = start_refused(&env).await;
    assert!(
        err.contains("table audit row (seq=3)") && err.contains("chain is broken"),
        "{err}"
    );
}

#[tokio::test]
async fn a_running_cas_refuses_state_edited_under_it() {
    let env = Env::start().await;
    env.apply_standard("p").await;
    env.attest("p", "driver", Some(JOB)).await.unwrap();
    db(&env)
        .execute(
            "UPDATE secrets SET kind = 'ascii' WHERE name = 'footer'",
            [],
        )
        .unwrap();
    let err = env
        .attest("p", "driver", Some(JOB))
        .await
        .expect_err("edited");
    assert!(
        err.to_string().contains("tampered") || err.to_string().contains("internal"),
        "{err}"
    );
    // The audit log truncated under the running CAS: the next entry is refused, not re-headed.
    db(&env)
        .execute(
            "UPDATE secrets SET kind = 'aes-256' WHERE name = 'footer'",
            [],
        )
        .unwrap();
    db(&env)
        .execute(
            "DELETE FROM audit WHERE seq = (SELECT max(seq) FROM audit)",
            [],
        )
        .unwrap();
    let err = env
        .attest("p", "driver", Some(JOB))
        .await
        .expect_err("truncated");
    assert!(
        err.to_string().contains("tampered") || err.to_string().contains("internal"),
        "{err}"
    );
}

#[tokio::test]
async fn a_table_emptied_with_its_head_is_refused() {
    let (env, _, _) = stopped_cas().await;
    let conn = db(&env);
    conn.execute("DELETE FROM policies", []).unwrap();
    conn.execute("DELETE FROM heads WHERE name = 'policies'", [])
        .unwrap();
    let err = start_refused(&env).await;
    // Caught by the root head (it covers every table's head), or by the missing head itself.
    assert!(
        err.contains("not the ones the root covers")
            || (err.contains("table policies") && err.contains("head is missing")),
        "{err}"
    );
}

#[tokio::test]
async fn one_table_rolled_back_with_its_own_head_is_refused() {
    let mut env = Env::start().await;
    let first = env.apply_standard("p").await;
    // The operator keeps copies of the policies table and its head...
    let conn = db(&env);
    conn.execute_batch(
        "CREATE TABLE saved_policies AS SELECT * FROM policies;
         CREATE TABLE saved_head AS SELECT * FROM heads WHERE name = 'policies';",
    )
    .unwrap();
    let text = env
        .policy("p", "sim", &env.measurement, Some(&first))
        .replace("FOOTER_HEX", "FOOTER");
    env.apply("p", &text).await.unwrap();
    env.server.take().unwrap().shutdown().await;
    // ...and restores both, leaving every other table current.
    conn.execute_batch(
        "DELETE FROM policies; INSERT INTO policies SELECT * FROM saved_policies;
         DELETE FROM heads WHERE name = 'policies'; INSERT INTO heads SELECT * FROM saved_head;
         DROP TABLE saved_policies; DROP TABLE saved_head;",
    )
    .unwrap();
    let err = start_refused(&env).await;
    assert!(err.contains("not the ones the root covers"), "{err}");
}
