//! The audit log: every policy change, attestation decision, secret release and KMS call, as
//! entries hash-chained to their predecessor and signed by the CAS audit key (ed25519).
//!
//! * entry `body`: JSON text `{"time": UNIX_SECONDS, "event": "...", ...}` stored verbatim
//!   (never secret values; reasons and names only);
//! * entry hash = SHA-256(`"cipherlake-audit-v1\0"` ‖ prev_hash (32) ‖ seq (u64 big-endian) ‖
//!   body), with prev_hash = 32 zero bytes for the first entry (seq 1);
//! * entry signature = ed25519 over the entry hash;
//! * signed head = ed25519 over `"cipherlake-audit-head-v2\0"` ‖ count (u64 BE) ‖ time (u64 BE,
//!   unix seconds when the head was signed) ‖ last hash, so dropping entries at the end
//!   (truncation) is detected too.
//!
//! [`verify_log`] checks an export against the CAS's audit public key; [`verify_since`] also
//! checks it against a head saved earlier, which detects a log truncated or rolled back in the
//! CAS's own database (where a fresh head would be signed over the shorter log).

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use rusqlite::{OptionalExtension, Transaction, params};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::CasError;

const ENTRY_DOMAIN: &[u8] = b"cipherlake-audit-v1\0";
const HEAD_DOMAIN: &[u8] = b"cipherlake-audit-head-v2\0";

/// One audit log entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the log, from 1.
    pub seq: u64,
    /// Hash of the previous entry, hex (64 zeros for the first).
    pub prev_hash: String,
    /// The event, JSON text.
    pub body: String,
    /// This entry's hash, hex.
    pub hash: String,
    /// The CAS's signature over the hash, hex.
    pub signature: String,
}

/// The signed head of the log: how many entries and the last hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Head {
    /// Number of entries.
    pub count: u64,
    /// When the head was signed, unix seconds.
    pub time: u64,
    /// Hash of the last entry, hex (zeros for an empty log).
    pub hash: String,
    /// Signature over the head, hex.
    pub signature: String,
}

/// An exported log (`GET /v1/audit`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Export {
    /// The CAS audit public key, hex.
    pub public_key: String,
    /// All entries in order.
    pub entries: Vec<Entry>,
    /// The signed head.
    pub head: Head,
}

/// Why a log does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditError {
    /// The export names a different audit key than the one trusted.
    #[error("the log is signed by audit key {found}, not the trusted {expected}")]
    WrongKey {
        /// The trusted key, hex.
        expected: String,
        /// The export's key, hex.
        found: String,
    },
    /// An entry is out of place (reordered, removed or inserted).
    #[error(
        "entry at position {position} has sequence number {seq} or does not chain to its predecessor (reordered, removed or inserted entries)"
    )]
    Order {
        /// Position in the export, from 1.
        position: u64,
        /// The entry's sequence number.
        seq: u64,
    },
    /// An entry's content does not match its hash (edited).
    #[error("entry {seq} was edited: its content does not match its hash")]
    Edited {
        /// The entry's sequence number.
        seq: u64,
    },
    /// An entry's signature does not verify.
    #[error("entry {seq}: the CAS signature does not verify")]
    BadSignature {
        /// The entry's sequence number.
        seq: u64,
    },
    /// The head does not match the entries (truncated or extended log) or is not signed.
    #[error(
        "the signed head covers {head_count} entries ending in {head_hash}, but the log has {count} (truncated or extended)"
    )]
    Head {
        /// Entries in the head.
        head_count: u64,
        /// Hash in the head.
        head_hash: String,
        /// Entries in the export.
        count: u64,
    },
    /// The signed head's signature does not verify.
    #[error("the signature of the log head does not verify")]
    BadHeadSignature,
    /// The log is shorter than a head saved earlier: entries were dropped.
    #[error(
        "the log has {count} entries, but a head saved at {saved_time} (unix) covered {saved_count}: the log was truncated or rolled back"
    )]
    Truncated {
        /// Entries in the saved head.
        saved_count: u64,
        /// When the saved head was signed.
        saved_time: u64,
        /// Entries now.
        count: u64,
    },
    /// The entry a saved head ends with is not in the log any more.
    #[error(
        "entry {seq} differs from the one a head saved at {saved_time} (unix) ended with: the log was rolled back and rewritten"
    )]
    Rewritten {
        /// The saved head's last sequence number.
        seq: u64,
        /// When the saved head was signed.
        saved_time: u64,
    },
    /// The export's head is older than the saved one (an old export replayed).
    #[error(
        "the log's head was signed at {time} (unix), before the saved head ({saved_time}): a replayed export"
    )]
    StaleHead {
        /// The saved head's time.
        saved_time: u64,
        /// The export's head time.
        time: u64,
    },
    /// A field is not valid hex of the right length.
    #[error("malformed field {0}")]
    Malformed(&'static str),
}

/// The CAS's audit signer.
pub struct AuditLog {
    key: SigningKey,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field(
                "public_key",
                &hex::encode(self.key.verifying_key().as_bytes()),
            )
            .finish()
    }
}

fn entry_hash(prev: &[u8; 32], seq: u64, body: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(ENTRY_DOMAIN);
    h.update(prev);
    h.update(seq.to_be_bytes());
    h.update(body.as_bytes());
    h.finalize().into()
}

fn head_message(count: u64, time: u64, hash: &[u8; 32]) -> Vec<u8> {
    let mut m = HEAD_DOMAIN.to_vec();
    m.extend_from_slice(&count.to_be_bytes());
    m.extend_from_slice(&time.to_be_bytes());
    m.extend_from_slice(hash);
    m
}

impl AuditLog {
    /// An audit log signing with the key from `seed`.
    pub fn new(seed: &[u8; 32]) -> Self {
        AuditLog {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// The audit public key.
    pub fn public_key(&self) -> [u8; 32] {
        self.key.verifying_key().to_bytes()
    }

    /// Appends an event (`body` must be a JSON object; `time` and `event` are added) in the
    /// caller's transaction.
    pub fn append(
        &self,
        tx: &Transaction<'_>,
        now: u64,
        event: &str,
        mut body: serde_json::Map<String, serde_json::Value>,
    ) -> Result<u64, CasError> {
        body.insert("time".into(), now.into());
        body.insert("event".into(), event.into());
        let text = serde_json::Value::Object(body).to_string();
        let last = tx
            .query_row(
                "SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)),
            )
            .optional()?;
        let (seq, prev) = match last {
            None => (1u64, [0u8; 32]),
            Some((seq, hash)) => (
                seq as u64 + 1,
                hash.try_into()
                    .map_err(|_| CasError::Crypto("corrupt audit hash".into()))?,
            ),
        };
        let hash = entry_hash(&prev, seq, &text);
        let signature = self.key.sign(&hash);
        tx.execute(
            "INSERT INTO audit (seq, prev_hash, body, hash, signature) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                seq as i64,
                prev.to_vec(),
                text,
                hash.to_vec(),
                signature.to_bytes().to_vec()
            ],
        )?;
        Ok(seq)
    }

    /// Exports the whole log with a head signed at `now`.
    pub fn export(&self, tx: &Transaction<'_>, now: u64) -> Result<Export, CasError> {
        let mut stmt =
            tx.prepare("SELECT seq, prev_hash, body, hash, signature FROM audit ORDER BY seq")?;
        let entries: Vec<Entry> = stmt
            .query_map([], |r| {
                Ok(Entry {
                    seq: r.get::<_, i64>(0)? as u64,
                    prev_hash: hex::encode(r.get::<_, Vec<u8>>(1)?),
                    body: r.get(2)?,
                    hash: hex::encode(r.get::<_, Vec<u8>>(3)?),
                    signature: hex::encode(r.get::<_, Vec<u8>>(4)?),
                })
            })?
            .collect::<Result<_, _>>()?;
        let last = match entries.last() {
            Some(e) => hex32(&e.hash).map_err(|_| CasError::Crypto("corrupt audit hash".into()))?,
            None => [0u8; 32],
        };
        let count = entries.len() as u64;
        let signature = self.key.sign(&head_message(count, now, &last));
        Ok(Export {
            public_key: hex::encode(self.public_key()),
            head: Head {
                count,
                time: now,
                hash: hex::encode(last),
                signature: hex::encode(signature.to_bytes()),
            },
            entries,
        })
    }
}

fn hex32(text: &str) -> Result<[u8; 32], AuditError> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).map_err(|_| AuditError::Malformed("hash"))?;
    Ok(out)
}

fn signature(text: &str) -> Result<Signature, AuditError> {
    let mut out = [0u8; 64];
    hex::decode_to_slice(text, &mut out).map_err(|_| AuditError::Malformed("signature"))?;
    Ok(Signature::from_bytes(&out))
}

/// Verifies an exported log against the trusted CAS audit public key: every entry in sequence
/// from 1, chained to its predecessor, its hash matching its content, signed; and the signed
/// head covering exactly these entries. Returns the number of entries.
pub fn verify_log(export: &Export, public_key: &[u8; 32]) -> Result<u64, AuditError> {
    let found = hex::decode(&export.public_key).map_err(|_| AuditError::Malformed("public_key"))?;
    if found.as_slice() != public_key.as_slice() {
        return Err(AuditError::WrongKey {
            expected: hex::encode(public_key),
            found: export.public_key.clone(),
        });
    }
    let key =
        VerifyingKey::from_bytes(public_key).map_err(|_| AuditError::Malformed("public_key"))?;
    let mut prev = [0u8; 32];
    for (i, entry) in export.entries.iter().enumerate() {
        let position = i as u64 + 1;
        if entry.seq != position || hex32(&entry.prev_hash)? != prev {
            return Err(AuditError::Order {
                position,
                seq: entry.seq,
            });
        }
        let hash = hex32(&entry.hash)?;
        if entry_hash(&prev, entry.seq, &entry.body) != hash {
            return Err(AuditError::Edited { seq: entry.seq });
        }
        key.verify_strict(&hash, &signature(&entry.signature)?)
            .map_err(|_| AuditError::BadSignature { seq: entry.seq })?;
        prev = hash;
    }
    let count = export.entries.len() as u64;
    let head_hash = hex32(&export.head.hash)?;
    verify_head(&export.head, &key)?;
    if export.head.count != count || head_hash != prev {
        return Err(AuditError::Head {
            head_count: export.head.count,
            head_hash: export.head.hash.clone(),
            count,
        });
    }
    Ok(count)
}

fn verify_head(head: &Head, key: &VerifyingKey) -> Result<(), AuditError> {
    key.verify_strict(
        &head_message(head.count, head.time, &hex32(&head.hash)?),
        &signature(&head.signature)?,
    )
    .map_err(|_| AuditError::BadHeadSignature)
}

/// Verifies `export` as [`verify_log`] does, and that it extends `saved`, a signed head of the
/// same log saved earlier (`cipherlake audit verify --save-head`): the log still holds at
/// least as many entries, the entry the saved head ended with is unchanged, and the export's
/// head is not older. Detects truncation and rollback inside the CAS's database, which a fresh
/// head alone cannot show. Returns the number of entries.
pub fn verify_since(
    export: &Export,
    saved: &Head,
    public_key: &[u8; 32],
) -> Result<u64, AuditError> {
    let count = verify_log(export, public_key)?;
    let key =
        VerifyingKey::from_bytes(public_key).map_err(|_| AuditError::Malformed("public_key"))?;
    verify_head(saved, &key)?;
    if export.head.time < saved.time {
        return Err(AuditError::StaleHead {
            saved_time: saved.time,
            time: export.head.time,
        });
    }
    if count < saved.count {
        return Err(AuditError::Truncated {
            saved_count: saved.count,
            saved_time: saved.time,
            count,
        });
    }
    if saved.count > 0 {
        let entry = &export.entries[(saved.count - 1) as usize];
        if hex32(&entry.hash)? != hex32(&saved.hash)? {
            return Err(AuditError::Rewritten {
                seq: saved.count,
                saved_time: saved.time,
            });
        }
    }
    Ok(count)
}
