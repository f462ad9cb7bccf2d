//! Integrity of the CAS database against its host: every row that decides something carries a
//! MAC under a key derived from the master key, over its table, its content and a sequence
//! number; each such table has a MAC'd head (row count, last sequence number and a digest of
//! every row's MAC), so an edited, added, replayed or deleted row is detected, at start and on
//! read, and named.
//!
//! Protected: `policies` (versions and which one is current), `secrets` (what each policy's
//! services receive), `platforms` (registered LAS keys), `policy_cas`, `cas_keys` and
//! `collateral` (what the operator imported). The
//! `audit` table is a signed hash chain; its head (count and last hash) is MAC'd here. Nonces
//! and the certificate log decide nothing and are not protected.
//!
//! A root head covers every other head, so tables cannot be rolled back one at a time, each
//! with its older head; the epoch (TPM sealing) lives in `cas_keys`, under the root too.
//!
//! The protection is as strong as the master key's: with `--sealing file` the operator holds
//! the key and can recompute every MAC.

use hmac::{KeyInit, Mac};
use rusqlite::types::ValueRef;
use rusqlite::{OptionalExtension, Transaction, params};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::CasError;
use crate::at_rest::MasterKeyProvider;

type HmacSha256 = hmac::Hmac<Sha256>;

/// A protected table: its name and its primary key columns (which name a row in errors).
#[derive(Debug, Clone, Copy)]
pub struct Table {
    /// The table.
    pub name: &'static str,
    /// Its primary key columns.
    pub key: &'static [&'static str],
    /// The columns the MAC covers (all but `seq` and `mac`).
    pub columns: &'static [&'static str],
}

/// Policy versions and which is current.
pub const POLICIES: Table = Table {
    name: "policies",
    key: &["name", "hash"],
    columns: &[
        "name",
        "hash",
        "predecessor",
        "text_sealed",
        "signer",
        "applied",
        "current",
    ],
};
/// Secrets (grants of values to a policy's services).
pub const SECRETS: Table = Table {
    name: "secrets",
    key: &["policy", "name"],
    columns: &["policy", "name", "kind", "value_sealed"],
};
/// Registered LAS platforms.
pub const PLATFORMS: Table = Table {
    name: "platforms",
    key: &["key"],
    columns: &["key", "registered"],
};
/// Policy workload CAs.
pub const POLICY_CAS: Table = Table {
    name: "policy_cas",
    key: &["policy"],
    columns: &["policy", "cert_der", "key_sealed"],
};
/// The CAS's own keys.
pub const CAS_KEYS: Table = Table {
    name: "cas_keys",
    key: &["name"],
    columns: &["name", "value_sealed"],
};
/// Collateral the operator imported.
pub const COLLATERAL: Table = Table {
    name: "collateral",
    key: &["id"],
    columns: &["id", "kind", "body", "number", "issued", "expires"],
};
/// Every protected table.
pub const TABLES: [Table; 6] = [
    POLICIES, SECRETS, PLATFORMS, POLICY_CAS, CAS_KEYS, COLLATERAL,
];

/// The MAC key, derived from the master key.
pub struct Integrity {
    key: Zeroizing<[u8; 32]>,
}

impl std::fmt::Debug for Integrity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Integrity(redacted)")
    }
}

impl Integrity {
    /// Derives the MAC key from the provider's master key.
    pub fn new(provider: &dyn MasterKeyProvider) -> Result<Self, CasError> {
        let master = provider.master_key()?;
        let mut kdf = <HmacSha256 as KeyInit>::new_from_slice(master.as_ref())
            .map_err(|_| CasError::Crypto("master key length".into()))?;
        kdf.update(b"cipherlake-integrity-key-v1");
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&kdf.finalize().into_bytes());
        Ok(Integrity { key })
    }

    fn mac(&self, domain: &str, parts: &[&[u8]]) -> [u8; 32] {
        let mut mac = <HmacSha256 as KeyInit>::new_from_slice(self.key.as_ref())
            .unwrap_or_else(|_| unreachable!("HMAC takes any key length"));
        mac.update(domain.as_bytes());
        mac.update(&[0]);
        for part in parts {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part);
        }
        mac.finalize().into_bytes().into()
    }

    fn verify(&self, domain: &str, parts: &[&[u8]], tag: &[u8]) -> bool {
        use subtle::ConstantTimeEq;
        tag.len() == 32 && bool::from(self.mac(domain, parts).ct_eq(tag))
    }
}

/// A row as read for checking: sequence number, MAC, key text and MAC'd content.
struct Row {
    seq: Option<i64>,
    mac: Option<Vec<u8>>,
    key: Vec<String>,
    content: Vec<u8>,
}

impl Row {
    fn describe(&self, table: &Table) -> String {
        let key: Vec<String> = table
            .key
            .iter()
            .zip(&self.key)
            .map(|(column, value)| format!("{column}={value}"))
            .collect();
        format!("table {} row ({})", table.name, key.join(", "))
    }
}

/// Encodes one column value unambiguously (type tag, then its bytes).
fn encode(value: ValueRef<'_>, out: &mut Vec<u8>) {
    let (tag, bytes): (u8, Vec<u8>) = match value {
        ValueRef::Null => (0, Vec::new()),
        ValueRef::Integer(i) => (1, i.to_be_bytes().to_vec()),
        ValueRef::Real(f) => (2, f.to_be_bytes().to_vec()),
        ValueRef::Text(t) => (3, t.to_vec()),
        ValueRef::Blob(b) => (4, b.to_vec()),
    };
    out.push(tag);
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(&bytes);
}

fn text_of(value: ValueRef<'_>) -> String {
    match value {
        ValueRef::Null => "NULL".into(),
        ValueRef::Integer(i) => i.to_string(),
        ValueRef::Real(f) => f.to_string(),
        ValueRef::Text(t) => String::from_utf8_lossy(t).into_owned(),
        ValueRef::Blob(b) => format!("x'{}'", hex::encode(b)),
    }
}

fn rows(tx: &Transaction<'_>, table: &Table) -> Result<Vec<Row>, CasError> {
    let sql = format!(
        "SELECT seq, mac, {} FROM {} ORDER BY seq",
        table.columns.join(", "),
        table.name
    );
    let mut stmt = tx.prepare(&sql)?;
    let key_at: Vec<usize> = table
        .key
        .iter()
        .filter_map(|k| table.columns.iter().position(|c| c == k))
        .collect();
    let rows = stmt
        .query_map([], |r| {
            let mut content = Vec::new();
            let mut key = Vec::new();
            for i in 0..table.columns.len() {
                let value = r.get_ref(i + 2)?;
                encode(value, &mut content);
                if key_at.contains(&i) {
                    key.push(text_of(value));
                }
            }
            Ok(Row {
                seq: r.get(0)?,
                mac: r.get(1)?,
                key,
                content,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(rows)
}

fn tampered(what: String, reason: &str) -> CasError {
    CasError::Tampered(format!("{what}: {reason}"))
}

/// The MAC'd head of a table: count, last sequence number and digest of the rows' MACs.
struct Head {
    count: i64,
    last_seq: i64,
    digest: Vec<u8>,
}

fn read_head(
    tx: &Transaction<'_>,
    integrity: &Integrity,
    table: &str,
) -> Result<Option<Head>, CasError> {
    let row = tx
        .query_row(
            "SELECT count, last_seq, digest, mac FROM heads WHERE name = ?1",
            params![table],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                ))
            },
        )
        .optional()?;
    let Some((count, last_seq, digest, mac)) = row else {
        return Ok(None);
    };
    let parts = head_parts(table, count, last_seq, &digest);
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    if !integrity.verify("head", &refs, &mac) {
        return Err(tampered(
            format!("the head of table {table}"),
            "its MAC does not verify (edited by hand)",
        ));
    }
    Ok(Some(Head {
        count,
        last_seq,
        digest,
    }))
}

fn head_parts<'a>(table: &'a str, count: i64, last_seq: i64, digest: &'a [u8]) -> [Vec<u8>; 4] {
    [
        table.as_bytes().to_vec(),
        count.to_be_bytes().to_vec(),
        last_seq.to_be_bytes().to_vec(),
        digest.to_vec(),
    ]
}

fn write_head(
    tx: &Transaction<'_>,
    integrity: &Integrity,
    table: &str,
    count: i64,
    last_seq: i64,
    digest: &[u8],
) -> Result<(), CasError> {
    let parts = head_parts(table, count, last_seq, digest);
    let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
    let mac = integrity.mac("head", &refs);
    tx.execute(
        "INSERT OR REPLACE INTO heads (name, count, last_seq, digest, mac) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![table, count, last_seq, digest, mac.to_vec()],
    )?;
    if table != ROOT {
        seal_root(tx, integrity)?;
    }
    Ok(())
}

fn row_mac(integrity: &Integrity, table: &Table, seq: i64, content: &[u8]) -> [u8; 32] {
    integrity.mac("row", &[table.name.as_bytes(), &seq.to_be_bytes(), content])
}

/// The digest the head carries: SHA-256 over every row's sequence number and MAC, in order.
fn digest_of<'a>(rows: impl Iterator<Item = (i64, &'a [u8])>) -> Vec<u8> {
    let mut sha = Sha256::new();
    for (seq, mac) in rows {
        sha.update(seq.to_be_bytes());
        sha.update(mac);
    }
    sha.finalize().to_vec()
}

/// Checks every row of `table` and its head; names the first row or head that fails.
pub fn verify_table(
    tx: &Transaction<'_>,
    integrity: &Integrity,
    table: &Table,
) -> Result<(), CasError> {
    verify_root(tx, integrity)?;
    let rows = rows(tx, table)?;
    let head = read_head(tx, integrity, table.name)?;
    // Every head is written when the database is created: a missing one was deleted.
    let Some(head) = head else {
        return Err(tampered(
            format!("table {}", table.name),
            "its integrity head is missing (deleted by hand)",
        ));
    };
    let mut last = 0;
    for row in &rows {
        let (Some(seq), Some(mac)) = (row.seq, row.mac.as_deref()) else {
            return Err(tampered(
                row.describe(table),
                "a row without its MAC (added by hand)",
            ));
        };
        if !integrity.verify(
            "row",
            &[table.name.as_bytes(), &seq.to_be_bytes(), &row.content],
            mac,
        ) {
            return Err(tampered(
                row.describe(table),
                "its MAC does not verify (edited by hand)",
            ));
        }
        if seq <= last || seq > head.last_seq {
            return Err(tampered(
                row.describe(table),
                "its sequence number is out of order (replayed from an older state)",
            ));
        }
        last = seq;
    }
    if rows.len() as i64 != head.count {
        return Err(tampered(
            format!("table {}", table.name),
            &format!(
                "{} rows, the head counts {} (rows deleted or added by hand)",
                rows.len(),
                head.count
            ),
        ));
    }
    let digest = digest_of(
        rows.iter()
            .filter_map(|r| Some((r.seq?, r.mac.as_deref()?))),
    );
    if digest != head.digest {
        return Err(tampered(
            format!("table {}", table.name),
            "its rows are not the ones its head covers (replaced from an older state)",
        ));
    }
    Ok(())
}

/// After a write to `table` in `tx`: the rows named by `changed` (their key values, in key
/// column order) get fresh sequence numbers and MACs; every other row must still verify;
/// the head is rewritten. Rows deleted by the write simply leave the head's count.
pub fn seal_changes(
    tx: &Transaction<'_>,
    integrity: &Integrity,
    table: &Table,
    changed: &[Vec<String>],
) -> Result<(), CasError> {
    let head = read_head(tx, integrity, table.name)?;
    let mut next = head.as_ref().map_or(0, |h| h.last_seq);
    let rows = rows(tx, table)?;
    let mut sealed = Vec::with_capacity(rows.len());
    for row in &rows {
        if changed.contains(&row.key) {
            next += 1;
            let seq = next;
            let mac = row_mac(integrity, table, seq, &row.content).to_vec();
            let where_key: Vec<String> = table
                .key
                .iter()
                .enumerate()
                .map(|(i, k)| format!("{k} = ?{}", i + 3))
                .collect();
            let sql = format!(
                "UPDATE {} SET seq = ?1, mac = ?2 WHERE {}",
                table.name,
                where_key.join(" AND ")
            );
            // Key columns are all TEXT: compared by the text `rows` read.
            let mut values: Vec<&dyn rusqlite::ToSql> = vec![&seq, &mac];
            for k in &row.key {
                values.push(k);
            }
            tx.execute(&sql, values.as_slice())?;
            sealed.push((seq, mac));
        } else {
            let (Some(seq), Some(mac)) = (row.seq, row.mac.clone()) else {
                return Err(tampered(
                    row.describe(table),
                    "a row without its MAC (added by hand)",
                ));
            };
            if !integrity.verify(
                "row",
                &[table.name.as_bytes(), &seq.to_be_bytes(), &row.content],
                &mac,
            ) {
                return Err(tampered(
                    row.describe(table),
                    "its MAC does not verify (edited by hand)",
                ));
            }
            sealed.push((seq, mac));
        }
    }
    sealed.sort_by_key(|(seq, _)| *seq);
    let digest = digest_of(sealed.iter().map(|(s, m)| (*s, m.as_slice())));
    write_head(
        tx,
        integrity,
        table.name,
        sealed.len() as i64,
        next,
        &digest,
    )
}

/// The audit log's end: entry count, last sequence number and last hash.
fn audit_end(tx: &Transaction<'_>) -> Result<(i64, i64, Vec<u8>), CasError> {
    let count: i64 = tx.query_row("SELECT count(*) FROM audit", [], |r| r.get(0))?;
    let last = tx
        .query_row(
            "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
        )
        .optional()?;
    let (seq, hash) = last.unwrap_or((0, vec![0; 32]));
    Ok((count, seq, hash))
}

/// Before an append: the log must end where its head says (a log truncated, extended or
/// rolled back while the CAS runs is refused, not re-headed).
pub fn check_audit_end(tx: &Transaction<'_>, integrity: &Integrity) -> Result<(), CasError> {
    let (count, seq, hash) = audit_end(tx)?;
    let matches = match read_head(tx, integrity, "audit")? {
        Some(head) => head.count == count && head.last_seq == seq && head.digest == hash,
        None => false,
    };
    if matches {
        Ok(())
    } else {
        Err(tampered(
            "table audit".into(),
            &format!(
                "the log ends at entry {seq} ({count} entries), not where its head says (entries deleted, added or rolled back by hand)"
            ),
        ))
    }
}

/// After an append: records the log's new end.
pub fn seal_audit(tx: &Transaction<'_>, integrity: &Integrity) -> Result<(), CasError> {
    let (count, seq, hash) = audit_end(tx)?;
    write_head(tx, integrity, "audit", count, seq, &hash)
}

/// Checks the audit log against its head: as many entries as the head counts, numbered from
/// 1, each chained to its predecessor, the last one's hash the head's.
pub fn verify_audit(tx: &Transaction<'_>, integrity: &Integrity) -> Result<(), CasError> {
    let head = read_head(tx, integrity, "audit")?;
    let mut stmt = tx.prepare("SELECT seq, prev_hash, hash FROM audit ORDER BY seq")?;
    let entries: Vec<(i64, Vec<u8>, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
        .collect::<Result<_, _>>()?;
    let Some(head) = head else {
        return Err(tampered(
            "table audit".into(),
            "its integrity head is missing (deleted by hand)",
        ));
    };
    let mut prev = vec![0u8; 32];
    for (i, (seq, prev_hash, hash)) in entries.iter().enumerate() {
        if *seq != i as i64 + 1 || *prev_hash != prev {
            return Err(tampered(
                format!("table audit row (seq={seq})"),
                "the chain is broken here (an entry deleted or inserted by hand)",
            ));
        }
        prev = hash.clone();
    }
    if entries.len() as i64 != head.count || prev != head.digest {
        return Err(tampered(
            "table audit".into(),
            &format!(
                "{} entries, the head covers {} (entries deleted at the end, or the log rolled back)",
                entries.len(),
                head.count
            ),
        ));
    }
    Ok(())
}

/// Writes the empty heads of a new database: from then on a missing head is tampering.
pub fn create_heads(tx: &Transaction<'_>, integrity: &Integrity) -> Result<(), CasError> {
    for table in &TABLES {
        write_head(
            tx,
            integrity,
            table.name,
            0,
            0,
            &digest_of(std::iter::empty()),
        )?;
    }
    seal_audit(tx, integrity)
}

/// The root head's name: it covers every other head, so tables cannot be rolled back one at a
/// time (each with its own older head).
const ROOT: &str = "root";

/// SHA-256 over every head but the root (name, count, last sequence number, digest), by name.
fn heads_digest(tx: &Transaction<'_>) -> Result<(i64, Vec<u8>), CasError> {
    let mut stmt = tx.prepare(
        "SELECT name, count, last_seq, digest FROM heads WHERE name <> 'root' ORDER BY name",
    )?;
    let heads: Vec<(String, i64, i64, Vec<u8>)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))?
        .collect::<Result<_, _>>()?;
    let mut sha = Sha256::new();
    for (name, count, last_seq, digest) in &heads {
        sha.update((name.len() as u64).to_be_bytes());
        sha.update(name.as_bytes());
        sha.update(count.to_be_bytes());
        sha.update(last_seq.to_be_bytes());
        sha.update(digest);
    }
    Ok((heads.len() as i64, sha.finalize().to_vec()))
}

/// Rewrites the root head over the current heads.
fn seal_root(tx: &Transaction<'_>, integrity: &Integrity) -> Result<(), CasError> {
    let (count, digest) = heads_digest(tx)?;
    write_head(tx, integrity, ROOT, count, 0, &digest)
}

/// The heads must be the ones the root covers.
fn verify_root(tx: &Transaction<'_>, integrity: &Integrity) -> Result<(), CasError> {
    let (count, digest) = heads_digest(tx)?;
    match read_head(tx, integrity, ROOT)? {
        Some(root) if root.count == count && root.digest == digest => Ok(()),
        Some(_) => Err(tampered(
            "table heads".into(),
            "the tables' heads are not the ones the root covers (a table rolled back or restored from an older copy)",
        )),
        None => Err(tampered(
            "table heads".into(),
            "the root head is missing (deleted by hand)",
        )),
    }
}

/// Checks every protected table and the audit log (at start).
pub fn verify_all(tx: &Transaction<'_>, integrity: &Integrity) -> Result<(), CasError> {
    verify_root(tx, integrity)?;
    for table in &TABLES {
        verify_table(tx, integrity, table)?;
    }
    verify_audit(tx, integrity)
}
