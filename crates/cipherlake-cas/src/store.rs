//! The embedded SQLite database under the data directory.
//!
//! One connection behind a mutex; every operation that changes state runs in one transaction
//! (a policy version, its generated secrets and its audit entry commit together or not at
//! all). Secret values, private keys and policy texts (which may hold inline secrets) are
//! stored sealed under the master key ([`crate::at_rest::Sealer`]).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension, Transaction, params};
use zeroize::Zeroizing;

use crate::CasError;
use crate::at_rest::Sealer;
use crate::integrity::{self, Integrity};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS policies (
    name TEXT NOT NULL, hash TEXT NOT NULL, predecessor TEXT, text_sealed BLOB NOT NULL,
    signer TEXT NOT NULL, applied INTEGER NOT NULL, current INTEGER NOT NULL,
    seq INTEGER, mac BLOB, PRIMARY KEY (name, hash));
CREATE TABLE IF NOT EXISTS secrets (
    policy TEXT NOT NULL, name TEXT NOT NULL, kind TEXT NOT NULL, value_sealed BLOB NOT NULL,
    seq INTEGER, mac BLOB, PRIMARY KEY (policy, name));
CREATE TABLE IF NOT EXISTS nonces (nonce TEXT PRIMARY KEY, expires INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS platforms (
    key TEXT PRIMARY KEY, registered INTEGER NOT NULL, seq INTEGER, mac BLOB);
CREATE TABLE IF NOT EXISTS policy_cas (
    policy TEXT PRIMARY KEY, cert_der BLOB NOT NULL, key_sealed BLOB NOT NULL,
    seq INTEGER, mac BLOB);
CREATE TABLE IF NOT EXISTS certificates (
    serial TEXT PRIMARY KEY, policy TEXT NOT NULL, service TEXT NOT NULL,
    issued INTEGER NOT NULL, not_after INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY, prev_hash BLOB NOT NULL, body TEXT NOT NULL,
    hash BLOB NOT NULL, signature BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS cas_keys (
    name TEXT PRIMARY KEY, value_sealed BLOB NOT NULL, seq INTEGER, mac BLOB);
CREATE TABLE IF NOT EXISTS collateral (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, body BLOB NOT NULL, number INTEGER,
    issued INTEGER, expires INTEGER, seq INTEGER, mac BLOB);
CREATE TABLE IF NOT EXISTS heads (
    name TEXT PRIMARY KEY, count INTEGER NOT NULL, last_seq INTEGER NOT NULL,
    digest BLOB NOT NULL, mac BLOB NOT NULL);
";

/// A stored secret: its kind and its decrypted encoding ([`crate::material`]).
pub type StoredSecret = (String, Zeroizing<Vec<u8>>);

/// A policy's workload CA: certificate DER and decrypted private key (PKCS#8 DER).
pub type PolicyCa = (Vec<u8>, Zeroizing<Vec<u8>>);

/// A stored policy version.
#[derive(Debug, Clone)]
pub struct StoredPolicy {
    /// The policy's YAML text.
    pub text: Zeroizing<String>,
    /// Hash, `sha256:HEX`.
    pub hash: String,
    /// The predecessor's hash, if any.
    pub predecessor: Option<String>,
    /// The owner key that signed it.
    pub signer: String,
    /// When it was applied (unix seconds).
    pub applied: u64,
}

/// The database, the sealer for its encrypted columns and the MAC key of its rows.
pub struct Store {
    conn: Mutex<Connection>,
    sealer: Sealer,
    integrity: Integrity,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and checks every protected row and
    /// head ([`crate::integrity`]); a database edited by hand is refused, naming the table
    /// and row.
    pub fn open(path: &Path, sealer: Sealer, integrity: Integrity) -> Result<Self, CasError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        let protected: bool = conn
            .query_row(
                "SELECT count(*) FROM pragma_table_info('policies') WHERE name = 'mac'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n == 1)?;
        let exists: bool = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'policies'",
            [],
            |r| r.get::<_, i64>(0).map(|n| n == 1),
        )?;
        if exists && !protected {
            return Err(CasError::Tampered(format!(
                "{}: written by a cipherlake without integrity protection; start the CAS on a new data directory",
                path.display()
            )));
        }
        conn.execute_batch(SCHEMA)?;
        let store = Store {
            conn: Mutex::new(conn),
            sealer,
            integrity,
        };
        if !exists {
            store.transaction(|tx| crate::integrity::create_heads(tx, &store.integrity))?;
        }
        store.transaction(|tx| crate::integrity::verify_all(tx, &store.integrity))?;
        Ok(store)
    }

    /// The sealer for encrypted columns.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The MAC key of protected rows.
    pub fn integrity(&self) -> &Integrity {
        &self.integrity
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave a transaction half-applied (it rolls
        // back on drop), so the connection is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` in a transaction, committed when `f` succeeds and rolled back otherwise.
    pub fn transaction<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, CasError>,
    ) -> Result<T, CasError> {
        let mut conn = self.lock();
        let tx = conn.transaction()?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }
}

fn secret_aad(policy: &str, name: &str) -> Vec<u8> {
    format!("cipherlake-secret-v1\0{policy}\0{name}").into_bytes()
}

fn policy_aad(name: &str, hash: &str) -> Vec<u8> {
    format!("cipherlake-policy-text-v1\0{name}\0{hash}").into_bytes()
}

/// Reads the current version of policy `name`.
pub fn current_policy(
    tx: &Transaction<'_>,
    store: &Store,
    name: &str,
) -> Result<Option<StoredPolicy>, CasError> {
    integrity::verify_table(tx, store.integrity(), &integrity::POLICIES)?;
    let row = tx
        .query_row(
            "SELECT hash, predecessor, text_sealed, signer, applied FROM policies
             WHERE name = ?1 AND current = 1",
            params![name],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, Option<String>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            },
        )
        .optional()?;
    let Some((hash, predecessor, sealed, signer, applied)) = row else {
        return Ok(None);
    };
    let text = store.sealer().open(&policy_aad(name, &hash), &sealed)?;
    let text = String::from_utf8(text.to_vec())
        .map_err(|_| CasError::Crypto("stored policy text is not UTF-8".into()))?;
    Ok(Some(StoredPolicy {
        text: Zeroizing::new(text),
        hash,
        predecessor,
        signer,
        applied: applied as u64,
    }))
}

/// Makes `policy` the current version of its name.
pub fn insert_policy(
    tx: &Transaction<'_>,
    store: &Store,
    name: &str,
    policy: &StoredPolicy,
) -> Result<(), CasError> {
    tx.execute(
        "UPDATE policies SET current = 0 WHERE name = ?1",
        params![name],
    )?;
    let sealed = store
        .sealer()
        .seal(&policy_aad(name, &policy.hash), policy.text.as_bytes())?;
    tx.execute(
        "INSERT OR REPLACE INTO policies (name, hash, predecessor, text_sealed, signer, applied, current)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 1)",
        params![
            name,
            policy.hash,
            policy.predecessor,
            sealed,
            policy.signer,
            policy.applied as i64
        ],
    )?;
    // Every version of the name changed its `current` flag.
    let mut stmt = tx.prepare("SELECT hash FROM policies WHERE name = ?1")?;
    let changed: Vec<Vec<String>> = stmt
        .query_map(params![name], |r| r.get::<_, String>(0))?
        .map(|hash| hash.map(|hash| vec![name.to_string(), hash]))
        .collect::<Result<_, _>>()?;
    integrity::seal_changes(tx, store.integrity(), &integrity::POLICIES, &changed)
}

/// Reads a secret's value (decrypted encoding, see [`crate::material`]) and kind.
pub fn secret(
    tx: &Transaction<'_>,
    store: &Store,
    policy: &str,
    name: &str,
) -> Result<Option<StoredSecret>, CasError> {
    integrity::verify_table(tx, store.integrity(), &integrity::SECRETS)?;
    let row = tx
        .query_row(
            "SELECT kind, value_sealed FROM secrets WHERE policy = ?1 AND name = ?2",
            params![policy, name],
            |r| Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .optional()?;
    match row {
        None => Ok(None),
        Some((kind, sealed)) => Ok(Some((
            kind,
            store.sealer().open(&secret_aad(policy, name), &sealed)?,
        ))),
    }
}

/// Stores a secret's value (replacing any previous one).
pub fn put_secret(
    tx: &Transaction<'_>,
    store: &Store,
    policy: &str,
    name: &str,
    kind: &str,
    encoded: &[u8],
) -> Result<(), CasError> {
    let sealed = store.sealer().seal(&secret_aad(policy, name), encoded)?;
    tx.execute(
        "INSERT OR REPLACE INTO secrets (policy, name, kind, value_sealed) VALUES (?1, ?2, ?3, ?4)",
        params![policy, name, kind, sealed],
    )?;
    integrity::seal_changes(
        tx,
        store.integrity(),
        &integrity::SECRETS,
        &[vec![policy.to_string(), name.to_string()]],
    )
}

/// Removes stored secrets of `policy` whose names are not in `keep`.
pub fn prune_secrets(
    tx: &Transaction<'_>,
    store: &Store,
    policy: &str,
    keep: &[&str],
) -> Result<(), CasError> {
    let mut stmt = tx.prepare("SELECT name FROM secrets WHERE policy = ?1")?;
    let names: Vec<String> = stmt
        .query_map(params![policy], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    for name in names.iter().filter(|n| !keep.contains(&n.as_str())) {
        tx.execute(
            "DELETE FROM secrets WHERE policy = ?1 AND name = ?2",
            params![policy, name],
        )?;
    }
    integrity::seal_changes(tx, store.integrity(), &integrity::SECRETS, &[])
}

/// Stores a fresh nonce valid until `expires`.
pub fn put_nonce(
    tx: &Transaction<'_>,
    nonce: &str,
    expires: u64,
    now: u64,
) -> Result<(), CasError> {
    tx.execute("DELETE FROM nonces WHERE expires < ?1", params![now as i64])?;
    tx.execute(
        "INSERT INTO nonces (nonce, expires) VALUES (?1, ?2)",
        params![nonce, expires as i64],
    )?;
    Ok(())
}

/// Consumes a nonce: removes it and returns its expiry, or `None` if unknown (never issued or
/// already used).
pub fn take_nonce(tx: &Transaction<'_>, nonce: &str) -> Result<Option<u64>, CasError> {
    let expires = tx
        .query_row(
            "DELETE FROM nonces WHERE nonce = ?1 RETURNING expires",
            params![nonce],
            |r| r.get::<_, i64>(0),
        )
        .optional()?;
    Ok(expires.map(|e| e as u64))
}

/// Registers a LAS platform key (hex); returns false if it was already registered.
pub fn add_platform(
    tx: &Transaction<'_>,
    store: &Store,
    key_hex: &str,
    now: u64,
) -> Result<bool, CasError> {
    let added = tx.execute(
        "INSERT OR IGNORE INTO platforms (key, registered) VALUES (?1, ?2)",
        params![key_hex, now as i64],
    )? == 1;
    if added {
        integrity::seal_changes(
            tx,
            store.integrity(),
            &integrity::PLATFORMS,
            &[vec![key_hex.to_string()]],
        )?;
    }
    Ok(added)
}

/// Every registered LAS platform key (hex).
pub fn platforms(tx: &Transaction<'_>, store: &Store) -> Result<Vec<String>, CasError> {
    integrity::verify_table(tx, store.integrity(), &integrity::PLATFORMS)?;
    let mut stmt = tx.prepare("SELECT key FROM platforms ORDER BY key")?;
    let keys = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(keys)
}

/// The policy's workload CA: certificate DER and sealed private key.
pub fn policy_ca(
    tx: &Transaction<'_>,
    store: &Store,
    policy: &str,
) -> Result<Option<PolicyCa>, CasError> {
    integrity::verify_table(tx, store.integrity(), &integrity::POLICY_CAS)?;
    let row = tx
        .query_row(
            "SELECT cert_der, key_sealed FROM policy_cas WHERE policy = ?1",
            params![policy],
            |r| Ok((r.get::<_, Vec<u8>>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .optional()?;
    match row {
        None => Ok(None),
        Some((cert, sealed)) => {
            let aad = format!("cipherlake-policy-ca-v1\0{policy}");
            Ok(Some((cert, store.sealer().open(aad.as_bytes(), &sealed)?)))
        }
    }
}

/// Stores the policy's workload CA.
pub fn put_policy_ca(
    tx: &Transaction<'_>,
    store: &Store,
    policy: &str,
    cert_der: &[u8],
    key_pkcs8: &[u8],
) -> Result<(), CasError> {
    let aad = format!("cipherlake-policy-ca-v1\0{policy}");
    let sealed = store.sealer().seal(aad.as_bytes(), key_pkcs8)?;
    tx.execute(
        "INSERT INTO policy_cas (policy, cert_der, key_sealed) VALUES (?1, ?2, ?3)",
        params![policy, cert_der, sealed],
    )?;
    integrity::seal_changes(
        tx,
        store.integrity(),
        &integrity::POLICY_CAS,
        &[vec![policy.to_string()]],
    )
}

/// Records an issued workload certificate.
pub fn record_certificate(
    tx: &Transaction<'_>,
    serial: &str,
    policy: &str,
    service: &str,
    issued: u64,
    not_after: u64,
) -> Result<(), CasError> {
    tx.execute(
        "INSERT INTO certificates (serial, policy, service, issued, not_after) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![serial, policy, service, issued as i64, not_after as i64],
    )?;
    Ok(())
}

/// A CAS key (audit signing key, TLS key), decrypted.
pub fn cas_key(
    tx: &Transaction<'_>,
    store: &Store,
    name: &str,
) -> Result<Option<Zeroizing<Vec<u8>>>, CasError> {
    integrity::verify_table(tx, store.integrity(), &integrity::CAS_KEYS)?;
    let sealed = tx
        .query_row(
            "SELECT value_sealed FROM cas_keys WHERE name = ?1",
            params![name],
            |r| r.get::<_, Vec<u8>>(0),
        )
        .optional()?;
    let aad = format!("cipherlake-cas-key-v1\0{name}");
    sealed
        .map(|s| store.sealer().open(aad.as_bytes(), &s))
        .transpose()
}

/// Stores a CAS key (replacing any previous value).
pub fn put_cas_key(
    tx: &Transaction<'_>,
    store: &Store,
    name: &str,
    value: &[u8],
) -> Result<(), CasError> {
    let aad = format!("cipherlake-cas-key-v1\0{name}");
    let sealed = store.sealer().seal(aad.as_bytes(), value)?;
    tx.execute(
        "INSERT OR REPLACE INTO cas_keys (name, value_sealed) VALUES (?1, ?2)",
        params![name, sealed],
    )?;
    integrity::seal_changes(
        tx,
        store.integrity(),
        &integrity::CAS_KEYS,
        &[vec![name.to_string()]],
    )
}

/// Collateral the operator imported: what it is, its content, and what it says of itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StoredCollateral {
    /// `dcap:FMSPC` or `amd-crl:ISSUER`.
    pub id: String,
    /// `dcap` or `amd-crl`.
    pub kind: String,
    /// The imported bytes (DCAP collateral JSON, CRL DER or PEM).
    #[serde(skip)]
    pub body: Vec<u8>,
    /// DCAP: the TCB evaluation data number; AMD: none.
    pub number: Option<u32>,
    /// When it was issued (unix seconds).
    pub issued: Option<u64>,
    /// When it must be replaced (unix seconds).
    pub expires: Option<u64>,
}

/// Every imported collateral, by id.
pub fn collateral(tx: &Transaction<'_>, store: &Store) -> Result<Vec<StoredCollateral>, CasError> {
    integrity::verify_table(tx, store.integrity(), &integrity::COLLATERAL)?;
    let mut stmt =
        tx.prepare("SELECT id, kind, body, number, issued, expires FROM collateral ORDER BY id")?;
    let rows = stmt
        .query_map([], |r| {
            Ok(StoredCollateral {
                id: r.get(0)?,
                kind: r.get(1)?,
                body: r.get(2)?,
                number: r.get::<_, Option<i64>>(3)?.map(|n| n as u32),
                issued: r.get::<_, Option<i64>>(4)?.map(|n| n as u64),
                expires: r.get::<_, Option<i64>>(5)?.map(|n| n as u64),
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

/// Stores imported collateral (replacing the one of the same id).
pub fn put_collateral(
    tx: &Transaction<'_>,
    store: &Store,
    c: &StoredCollateral,
) -> Result<(), CasError> {
    tx.execute(
        "INSERT OR REPLACE INTO collateral (id, kind, body, number, issued, expires) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            c.id,
            c.kind,
            c.body,
            c.number.map(i64::from),
            c.issued.map(|v| v as i64),
            c.expires.map(|v| v as i64)
        ],
    )?;
    integrity::seal_changes(
        tx,
        store.integrity(),
        &integrity::COLLATERAL,
        &[vec![c.id.clone()]],
    )
}
